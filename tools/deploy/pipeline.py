"""Deploy a trained adapter: merge, verify the merge, load it with stock transformers, export
GGUF for llama.cpp/Ollama and run it with llama.cpp against the merged model (parity), serve
it behind the OpenAI-compatible API and check it with the official client, then write the
model card. Each step's failure is recorded (not raised) so
the deployment gate can say what broke; later steps that depend on it are skipped."""

from __future__ import annotations

import time
from pathlib import Path

from pydantic import BaseModel, Field


class DeployReport(BaseModel):
    ok: bool = False
    merged: str = ""
    adapter: str = ""
    merge: dict = Field(default_factory=dict)
    verification: dict = Field(default_factory=dict)
    load_check: dict = Field(default_factory=dict)
    gguf: dict = Field(default_factory=dict)
    llama_cpp: dict = Field(default_factory=dict)  # llama_parity.ParityReport
    served: dict = Field(default_factory=dict)
    model_card: str = ""
    vllm: list[str] = Field(default_factory=list)
    ollama: list[str] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)
    seconds: dict[str, float] = Field(default_factory=dict)

    def summary(self) -> str:
        lines = []
        if self.verification:
            lines.append(self.verification.get("summary", ""))
        if self.load_check:
            lc = self.load_check
            lines.append(f"stock transformers (no ftagent) loaded {self.merged} and answered "
                         f"{lc.get('answer', '')!r}" if lc.get("ok") else
                         f"load check failed: {lc.get('error')}")
        if self.gguf:
            g = self.gguf
            lines.append(f"GGUF {g['quant']} {g['size_bytes'] / 2**20:.0f} MiB read back "
                         f"and matched ({g['n_tensors']} tensors): {g['gguf']}")
        if self.llama_cpp:
            lines.append(self.llama_cpp.get("summary", ""))
        if self.served:
            lines.append(self.served.get("summary", ""))
        if self.problems:
            lines.append("Problems: " + "; ".join(self.problems))
        out = "\n".join(f"- {x}" for x in lines if x)
        if self.llama_cpp.get("table"):
            out += "\n\nllama.cpp parity (the GGUF against the merged model):\n\n" + "\n".join(
                self.llama_cpp["table"])
        return out


def _timed(report: DeployReport, step: str, fn, *args, **kw):
    t0 = time.perf_counter()
    try:
        return fn(*args, **kw)
    except Exception as exc:  # noqa: BLE001 - the gate shows what broke
        report.problems.append(f"{step}: {type(exc).__name__}: {exc}")
        return None
    finally:
        report.seconds[step] = round(time.perf_counter() - t0, 1)


def deploy(base_path: str | Path, adapter_path: str | Path, out_dir: str | Path,
           test_rows: list[dict], max_tokens: int, *,
           name: str = "tuned", bf16: bool = False, gguf_quant: str | None = "q8_0",
           card: dict | None = None, verify_rows: int = 25, serve_prompts: int = 5) -> DeployReport:
    """`test_rows` are chat rows of the held-out split (the first `serve_prompts` are run by
    llama.cpp and replayed against the server, each compared with the merged model's greedy
    answer in transformers). `card` carries the model card's inputs (base, method, goal,
    data, config, eval_report)."""
    from ftagent.tools.chat_template import ollama_commands, vllm_commands
    from ftagent.tools.deploy.card import write_model_card
    from ftagent.tools.deploy.client_check import check_served
    from ftagent.tools.deploy.gguf import export_gguf
    from ftagent.tools.deploy.merge import check_loads_and_answers, merge_model
    from ftagent.tools.deploy.merge_verify import verify_merge
    from ftagent.tools.evaluate.compare import load_plain
    from ftagent.tools.serve.app import start_server_process

    out_dir = Path(out_dir)
    r = DeployReport()
    merged = _timed(r, "merge", merge_model, base_path, adapter_path, out_dir / "merged",
                    keep_adapter=out_dir / "adapter", overwrite=True)
    if merged is None:
        return r
    r.merged, r.adapter, r.merge = merged.merged, merged.adapter, merged.model_dump()
    check = _timed(r, "verify", verify_merge, base_path, r.adapter, r.merged,
                   test_rows[:verify_rows])
    if check is not None:
        r.verification = {**check.model_dump(), "summary": check.summary()}
        if not check.ok:
            r.problems.append(check.summary())
    prompt = test_rows[0]["messages"][:-1]
    r.load_check = _timed(r, "load_check", check_loads_and_answers, r.merged, prompt) or {}
    if r.load_check and not r.load_check.get("ok"):
        r.problems.append(f"load check: {r.load_check.get('error')}")
    rows = test_rows[:serve_prompts]
    convs = [row["messages"][:-1] for row in rows]
    # The merged model as the server loads it: the reference for the served answers (and, in
    # float32, for llama.cpp's).
    loaded = _timed(r, "reference", load_plain, r.merged, bf16)
    refs = _timed(r, "reference_answers", greedy_references, *loaded, convs, max_tokens) if loaded \
        else None
    if gguf_quant:
        g = _timed(r, "gguf", export_gguf, r.merged, out_dir / "gguf", gguf_quant, name,
                   overwrite=True)
        if g is not None:
            r.gguf = g.model_dump()
            r.ollama = ollama_commands(name, g.modelfile)
            r.llama_cpp = _llama_cpp_parity(r, g.gguf, convs, rows, max_tokens, gguf_quant,
                                            None if bf16 or not loaded else loaded)
    r.vllm = vllm_commands(r.merged, base=base_path, adapter_dir=r.adapter, name=name)
    if refs is not None:
        r.served = _serve_and_check(r, start_server_process, check_served, convs, refs,
                                    loaded[1], max_tokens, bf16, name)
    if r.llama_cpp and r.served:
        from ftagent.tools.deploy.llama_parity import ParityReport

        r.llama_cpp["table"] = ParityReport.model_validate(r.llama_cpp).table(r.served)
    card = card or {}
    _timed(r, "model_card", write_model_card, r.merged, name,
           card.get("base") or {"name": str(base_path), "path": str(base_path)},
           card.get("method") or merged.method, goal=card.get("goal"), data=card.get("data"),
           config=card.get("config"), eval_report=card.get("eval_report"),
           merge=r.merge, verification=r.verification, gguf=r.gguf or None, vllm=r.vllm,
           ollama=r.ollama or None)
    r.model_card = str(Path(r.merged) / "README.md")
    r.ok = not r.problems
    return r


def greedy_references(model, tokenizer, convs: list[list[dict]], max_tokens: int) -> list[dict]:
    """The merged model's greedy answer to each conversation: token ids and, per step, the
    margin between its top two logits (where a near-tie could flip)."""
    import torch
    from ftagent.tools.deploy.llama_parity import _margin, hf_greedy

    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None
                                                     else tokenizer.eos_token_id])
    out = []
    for conv in convs:
        ids = tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=True,
                                            return_dict=True)["input_ids"]
        with torch.no_grad():
            g = hf_greedy(model, list(ids), eos_ids, max_tokens)
        out.append({"tokens": g["tokens"], "margins": [_margin(x) for x in g["logits"]]})
    return out


def _llama_cpp_parity(r: DeployReport, gguf_path: str, convs, rows, max_tokens: int,
                      quant: str, loaded) -> dict:
    from ftagent.tools.deploy.llama_parity import check_parity
    from ftagent.tools.deploy.llama_runtime import install_hint, missing

    if missing():
        r.problems.append("llama.cpp parity not checked: " + "; ".join(missing())
                          + f"; {install_hint()}")
        return {}
    model, tok = loaded if loaded else (None, None)
    p = _timed(r, "llama_cpp", check_parity, gguf_path, r.merged, convs, max_tokens, quant,
               [row["messages"][-1]["content"] for row in rows], model=model, tokenizer=tok)
    if p is None:
        return {}
    if not p.ok:
        r.problems.append("llama.cpp parity: " + "; ".join(p.problems))
    return {**p.model_dump(), "summary": p.summary(), "table": p.table()}


def _serve_and_check(r: DeployReport, start, check, convs, refs, tokenizer, max_tokens, bf16,
                     name: str) -> dict:
    from ftagent.tools.deploy.client_check import NEAR_TIE_MARGIN

    t0 = time.perf_counter()
    try:
        with start(r.merged, model_name=name,
                   extra_args=["--bf16"] if bf16 else []) as server:
            said = check(server.base_url, convs, refs, max_tokens, tokenizer,
                         NEAR_TIE_MARGIN["bfloat16" if bf16 else "float32"])
    except (RuntimeError, OSError) as exc:
        r.problems.append(f"serve: {exc}")
        return {}
    finally:
        r.seconds["serve"] = round(time.perf_counter() - t0, 1)
    if not said.ok:
        r.problems.append("served model: " + "; ".join(said.problems))
    return {**said.model_dump(), "summary": said.summary()}
