"""`ftagent merge` and `ftagent export`: adapter -> merged HF folder (verified, with a model
card) -> GGUF + Ollama Modelfile. Heavy libraries are imported inside the commands."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from ftagent.agent.cli.common import EXIT_FAILED, fail

RunOpt = Annotated[str | None, typer.Option(help="a run id or run folder to take paths from")]
NameOpt = Annotated[str | None, typer.Option(help="model name for vLLM/Ollama (default: "
                                                  "the run id or the folder name)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="print the result as JSON")]



def _read_json(path: Path) -> dict:
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}


def _run_folder(run: str) -> Path:
    from ftagent.agent.service.runs import RunError, find_run_or_folder

    try:
        return find_run_or_folder(run)
    except RunError as exc:
        raise fail(str(exc)) from None


def _run_adapter(folder: Path) -> Path | None:
    if (folder / "adapter" / "adapter_config.json").is_file():
        return folder / "adapter"
    attempts = sorted(folder.glob("train/attempt-*/adapter/adapter_config.json"),
                      key=lambda p: int(p.parent.parent.name.split("-")[-1]))
    return attempts[-1].parent if attempts else None


def run_info(folder: Path) -> dict:
    """What a run folder says about its base, adapter, data, config and evaluation."""
    import yaml

    manifest = _read_json(folder / "manifest.json")
    plan = _read_json(folder / "plan.json")
    report = _read_json(folder / "data" / "report.json")
    adapter = _run_adapter(folder)
    config_file = next((p for p in ([adapter.parent / "config.yaml"] if adapter else [])
                        + [folder / "config.yaml"] if p.is_file()), None)
    base = (manifest.get("base_model") or {}).get("path") or plan.get("model_path")
    data = None
    if report:
        data = {"source": report.get("source"), "schema": report.get("schema_detail"),
                "sha256": report.get("sha256"), "rows": report.get("kept"),
                "splits": report.get("splits"), "split_sha256": report.get("split_sha256"),
                "licence": report.get("licence")}
    return {
        "run_id": manifest.get("run_id") or folder.name,
        "goal": (manifest.get("inputs") or {}).get("goal"),
        "base": base,
        "base_card": {"name": plan.get("model") or base, "path": base,
                      "licence": (plan.get("model_card") or {}).get("licence")},
        "adapter": adapter,
        "test": (report.get("split_paths") or {}).get("test"),
        "data": data,
        "config": yaml.safe_load(config_file.read_text(encoding="utf-8")) if config_file else None,
        "eval_report": _read_json(folder / "eval" / "report.json") or None,
    }


def merge_command(
    base: Annotated[str | None, typer.Option(help="base model (name, local folder or cached "
                                                  "hub id)")] = None,
    adapter: Annotated[Path | None, typer.Option(help="LoRA adapter folder to merge")] = None,
    out: Annotated[Path | None, typer.Option(help="merged model folder (must not exist; "
                                                  "with --run: RUN/merged)")] = None,
    run: RunOpt = None,
    test: Annotated[Path | None, typer.Option(help="held-out chat JSONL for the merge check "
                                                   "(default: the run's test split)")] = None,
    name: NameOpt = None,
    load_check: Annotated[bool, typer.Option(help="load the folder with plain transformers "
                                                  "in a fresh process and answer a prompt")] = True,
    as_json: JsonOpt = False,
) -> None:
    """Merge a LoRA adapter into its base (in the base's dtype), check the merged model
    against base + adapter, and write a model card and the serving commands."""
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    base, adapter, out, test, info = _merge_inputs(run, base, adapter, out, test)
    from ftagent.tools.deploy.merge import (
        MergeResult,
        check_adapter,
        check_loads_and_answers,
        merge_model,
    )
    from ftagent.tools.evaluate.compare import read_rows
    from ftagent.tools.models import ModelNotFoundError, resolve_model

    try:
        base_path = resolve_model(base).path
        check_adapter(Path(adapter))
    except (ModelNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from None
    rows = read_rows(test) if test else []
    keep = None if run else out / "adapter"  # a run keeps its adapter next to merged already
    try:
        result: MergeResult = merge_model(base_path, adapter, out, keep_adapter=keep)
    except (ValueError, FileExistsError) as exc:
        raise fail(str(exc)) from None
    from ftagent.tools.deploy.merge_verify import DEFAULT_PROMPTS, verify_merge

    check = verify_merge(base_path, adapter, out, rows[:50])
    probe = rows[0]["messages"][:-1] if rows else DEFAULT_PROMPTS[0]
    loaded = check_loads_and_answers(out, probe) if load_check else None
    name = name or info.get("run_id") or out.name
    commands = _serving_commands(out, base_path, Path(result.adapter), name)
    from ftagent.tools.atomic import write_json
    from ftagent.tools.deploy.card import write_model_card

    write_json(out / "merge_check.json", {"merge": result.model_dump(),
                                          "verification": check.model_dump(), "load": loaded})
    write_model_card(out, name, info.get("base_card") or {"name": base, "path": str(base_path)},
                     result.method, goal=info.get("goal"), data=info.get("data"),
                     config=info.get("config"), eval_report=info.get("eval_report"),
                     merge=result.model_dump(), verification=check.model_dump(), **commands)
    ok = check.ok and (loaded is None or loaded["ok"])
    _say_merged(as_json, ok, out, result, check, loaded, commands)
    if not ok:
        raise fail(f"the merged folder {out} failed its checks; inspect it, then delete it "
                    "before merging again", EXIT_FAILED)


def _merge_inputs(run, base, adapter, out, test):
    """Base, adapter, output and test file from the flags, a run filling in what was not
    given; refuses a missing input or an output that already holds something."""
    info: dict = {}
    if run:
        folder = _run_folder(run)
        info = run_info(folder)
        if info["adapter"] is None:
            raise fail(f"{folder} has no trained adapter yet: finish training first")
        base = base or info["base"]
        adapter = adapter or info["adapter"]
        out = out or folder / "merged"
        test = test or (Path(info["test"]) if info["test"] else None)
    if not (base and adapter and out):
        raise fail("give --run RUN, or --base, --adapter and --out")
    test = test or (Path(info["test"]) if info.get("test") else None)
    if test is not None and not test.is_file():
        raise fail(f"--test {test}: not found")
    if out.exists() and any(out.iterdir()):
        raise fail(f"{out} already exists; a finished output is never overwritten: choose "
                    "another --out" + (f" (export it with: ftagent export --run {run} --gguf)"
                                       if run else ""))
    if test is not None and not test.is_file():
        raise fail(f"--test {test}: not found")
    return base, adapter, out, test, info


def _say_merged(as_json: bool, ok: bool, out: Path, result, check, loaded, commands) -> None:
    if as_json:
        typer.echo(json.dumps({"ok": ok, "merge": result.model_dump(),
                               "verification": check.model_dump(), "load": loaded, **commands}))
        return
    typer.echo(f"merged into {out} ({result.dtype}); adapter kept at {result.adapter}")
    if result.note:
        typer.echo(f"note: {result.note}")
    typer.echo(check.summary())
    if loaded is not None:
        typer.echo(f"loads with plain transformers: {loaded['answer']!r}" if loaded["ok"]
                   else f"load check failed: {loaded['error']}")
    typer.echo("serve with vLLM:\n  " + "\n  ".join(commands["vllm"]))
    typer.echo(f"GGUF for llama.cpp/Ollama: ftagent export {out} --gguf")


def _serving_commands(merged: Path, base: Path, adapter: Path, name: str) -> dict:
    from ftagent.tools.chat_template import ollama_commands, vllm_commands

    rank = _read_json(adapter / "adapter_config.json").get("r")
    gguf_dir = merged.parent / "gguf"
    return {"vllm": vllm_commands(merged, base=base, adapter_dir=adapter, name=name,
                                  lora_rank=rank),
            "ollama": [f"ftagent export {merged} --gguf --out {gguf_dir}",
                       *ollama_commands(name, gguf_dir / "Modelfile")]}


def export_command(
    merged: Annotated[Path | None, typer.Argument(help="merged HF model folder")] = None,
    gguf: Annotated[bool, typer.Option("--gguf", help="write a GGUF file and an Ollama "
                                                      "Modelfile")] = False,
    quant: Annotated[str, typer.Option(help="GGUF weights: f16, bf16 or q8_0")] = "f16",
    check: Annotated[bool, typer.Option(
        "--check", help="run the GGUF with llama.cpp on held-out prompts and compare with the "
                        "merged model in transformers")] = False,
    test: Annotated[Path | None, typer.Option(help="held-out chat JSONL for --check (default: "
                                                   "the run's test split, else two built-in "
                                                   "prompts)")] = None,
    max_tokens: Annotated[int, typer.Option(help="answer length limit for --check")] = 64,
    out: Annotated[Path | None, typer.Option(help="output folder (default: next to the merged "
                                                  "folder, named gguf)")] = None,
    run: RunOpt = None,
    name: NameOpt = None,
    as_json: JsonOpt = False,
) -> None:
    """Export a merged model for llama.cpp and Ollama with llama.cpp's own converter:
    model.gguf (read back), Modelfile with the training chat template, and a model card;
    with --check, llama.cpp runs it against the merged model (prompt, stop, answers, speed)."""
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    info: dict = {}
    if not gguf:
        raise fail("say what to export: --gguf (the only format so far)")
    if quant not in ("f16", "bf16", "q8_0"):
        raise fail(f"--quant must be f16, bf16 or q8_0, got '{quant}'")
    if run:
        folder = _run_folder(run)
        info = run_info(folder)
        merged = merged or folder / "merged"
        if not merged.is_dir():
            raise fail(f"{folder} has no merged model yet: ftagent merge --run {run}")
    if merged is None:
        raise fail("give the merged model folder, or --run RUN")
    if not (merged / "config.json").is_file():
        raise fail(f"{merged} is not a Hugging Face model folder (no config.json)")
    out = out or merged.parent / "gguf"
    test = test or (Path(info["test"]) if info.get("test") else None)
    if test is not None and not test.is_file():
        raise fail(f"--test {test}: not found")
    if out.exists() and any(out.iterdir()):
        raise fail(f"{out} already exists; a finished export is never overwritten: choose "
                    "another --out")
    from ftagent.tools.chat_template import ollama_commands
    from ftagent.tools.deploy.card import write_model_card
    from ftagent.tools.deploy.gguf import GGUFCheckFailed, export_gguf

    name = name or info.get("run_id") or merged.name
    try:
        result = export_gguf(merged, out, quant, name=name)
    except ValueError as exc:
        raise fail(str(exc)) from None
    except (GGUFCheckFailed, RuntimeError) as exc:
        raise fail(str(exc), EXIT_FAILED) from None
    parity = _parity(result.gguf, merged, test, max_tokens, quant) if check else None
    ollama = ollama_commands(name, out / "Modelfile")
    llama_cpp = [f"llama-server -m {out / 'model.gguf'} --jinja"]
    merge_info = _read_json(merged / "merge_check.json")
    write_model_card(out, name, info.get("base_card") or {"name": _base_name(merged)},
                     (merge_info.get("merge") or {}).get("method") or "merged",
                     goal=info.get("goal"), data=info.get("data"), config=info.get("config"),
                     eval_report=info.get("eval_report"), merge=merge_info.get("merge"),
                     verification=merge_info.get("verification"), gguf=result.model_dump(),
                     ollama=ollama, llama_cpp=llama_cpp)
    if as_json:
        typer.echo(json.dumps({**result.model_dump(), "ollama": ollama,
                               **({"llama_cpp": parity.model_dump()} if parity else {})}))
    else:
        _say_export(result, ollama, llama_cpp, parity)
    if parity is not None and not parity.ok:
        raise typer.Exit(EXIT_FAILED)


def _parity(gguf_path: str, merged: Path, test: Path | None, max_tokens: int, quant: str):
    from ftagent.tools.deploy.llama_parity import check_parity
    from ftagent.tools.deploy.llama_runtime import install_hint, missing
    from ftagent.tools.deploy.merge_verify import DEFAULT_PROMPTS
    from ftagent.tools.evaluate.compare import read_rows

    if missing():
        raise fail("--check needs llama.cpp: " + "; ".join(missing()) + f"; {install_hint()}",
                   EXIT_FAILED)
    rows = read_rows(test)[:5] if test else []
    convs = [r["messages"][:-1] for r in rows] or DEFAULT_PROMPTS
    refs = [r["messages"][-1]["content"] for r in rows] or None
    return check_parity(gguf_path, merged, convs, max_tokens, quant, refs)


def _say_export(result, ollama: list[str], llama_cpp: list[str], parity) -> None:
    err = result.check.get("max_rel_error")
    typer.echo(f"wrote {result.gguf} ({result.quant}, {result.architecture}, "
               f"{result.size_bytes / 2**20:.1f} MiB, {result.n_tensors} tensors, "
               f"{result.seconds:.1f} s, by {result.writer}); read back: "
               + (f"largest error {err:.1e} of max |w|" if err is not None else
                  result.check.get("read_back", "ok")))
    for note in result.notes:
        typer.echo(f"note: {note}")
    typer.echo("run with Ollama:\n  " + "\n  ".join(ollama))
    typer.echo(f"or llama.cpp:\n  {llama_cpp[0]}")
    if parity is not None:
        typer.echo(("llama.cpp check passed: " if parity.ok else "llama.cpp check FAILED: ")
                   + parity.summary())
        typer.echo("\n".join(parity.table()))


def _base_name(merged: Path) -> str | None:
    merge = _read_json(merged / "merge_check.json").get("merge") or {}
    return merge.get("base")
