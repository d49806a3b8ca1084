"""Training throughput: ftagent's trainer against TRL's SFT trainer, quick-start and tuned.

    .venv/bin/python evals/bench/train_throughput.py [--steps 12] [--rounds 2]
        [--data chat|banking77|both] [--fp32] [--trl-padded] [--json out.json]
    .venv/bin/python evals/bench/train_throughput.py --rss-steps 300 [--plot rss.png]

Same model (bundled SmolLM2-135M, or --model), same LoRA (r 16, alpha 32, q/k/v/o, no
dropout), same optimizer settings (lr 2e-4, linear schedule, no warm-up, seed 42) and 8
examples per optimizer step, so every set-up sees the same batches in the same order (the
bench checks it). Two data sets in evals/bench/data/: `chat` (512 synthetic rows of
skewed length, nothing shared) and `banking77` (320 BANKING77 rows, each with the same
~560-token system prompt listing all 77 intents: rows share most of their tokens).

Set-ups (evals/bench/throughput_setups.py builds them):

- `TRL quick-start`: `SFTTrainer(model=path, train_dataset=..., peft_config=LoraConfig(...))`
  with SFTConfig's defaults: padded rows, gradient checkpointing, fp32 weights under bf16
  autocast, TRL's fused LM head; on a CPU `use_cpu=True`, as TRL's error message asks;
- `TRL tuned`: the strongest TRL set-up that keeps the same batches: bf16 weights where the
  CPU has bf16 (`use_bf16("auto")`), `padding_free=True`, no gradient checkpointing, SDPA
  attention (on a CPU TRL has no varlen kernel: transformers builds one block-diagonal
  mask over the flattened batch from the position ids; exact, but attention costs the
  square of the batch's tokens), completion-only loss (TRL's default for prompt/completion
  rows), bf16 autocast (TRL's default);
- `ftagent, no sharing`: `tools.train.recipe.train` with the config defaults but
  `shared_prefix=False` (padding-free rows with per-example attention, loss projected only
  on answer tokens, bf16 base weights);
- `ftagent`: the config defaults, `shared_prefix=True` included;
- `TRL quick-start, fp32` (only with --fp32): the quick-start with bf16=False;
- `TRL tuned, padded` (only with --trl-padded): `TRL tuned` with padded rows, for data of
  near-equal row lengths (banking77), where the dense mask costs more than padding.

Method. Every set-up runs in its own child process with the same environment
(`tools.train.jobs.training_env()`, what ftagent's own jobs get; printed), one after the
other; the order alternates by round (A B C D, then D C B A, ...) so drift in the
machine's load hits every set-up alike; a matmul ceiling (bf16 and fp32, 2048^2) is
measured in a child at the start of every round. Reported per set-up, from the rounds'
medians: real tokens/s over steps 2..N (step 1 warms up), its ratio to `TRL tuned` and
to the quick-start, peak RSS (CUDA peak on a GPU), the final loss (mean of the last 3
steps: the same batches everywhere; flagged if it differs between rounds) and model FLOP/s
as a share of the median bf16 ceiling.

Real tokens are the tokens of the rows fed to the trainer, counted by a wrapper around
each trainer's data collator before padding, flattening or prefix sharing: the number
TRL's `num_tokens` reports for padding-free rows (and, via the attention mask, for padded
ones), and for ftagent with sharing the rows' tokens as if nothing were shared. Model
FLOPs count 4 x the non-embedding weights per real token, 4 x the output projection per
token that carries loss, and causal attention (6 x layers x d_q x L^2 per row of L
tokens); padding, masked-out attention and recomputation are not counted.

`--rss-steps N` runs `ftagent` (defaults, checkpoints every 20 steps as in a real run) for
N steps on the banking77 data, logs the current RSS after every step, plots it and prints
it at a few steps with the slope after warm-up: flat means no leak.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from evals.bench import throughput_setups as S  # noqa: E402

CHILD_TIMEOUT_S = 4 * 3600


def child_env() -> tuple[dict, dict]:
    """The environment every child gets (ftagent's training_env) and what it changes."""
    from ftagent.tools.train.jobs import training_env

    env = training_env()
    changed = {k: v for k, v in env.items() if os.environ.get(k) != v}
    threads = {k: env[k] for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS") if k in env}
    return env, {"set_by_training_env": changed, "threads_env": threads}


class ChildFailed(RuntimeError):
    pass


def spawn(args: list[str], out: Path, env: dict) -> str:
    """Run this script as a child; its stderr is kept in out/child.log."""
    out.mkdir(parents=True, exist_ok=True)
    r = subprocess.run([sys.executable, __file__, *args], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=CHILD_TIMEOUT_S)
    (out / "child.log").write_text(r.stderr)
    if r.returncode != 0:
        # A child killed by a signal leaves no traceback: -9 on Linux is mostly the OOM killer.
        why = (f"killed by signal {-r.returncode}" + (" (out of memory?)" if r.returncode == -9
                                                      else "")
               if r.returncode < 0 else f"exit code {r.returncode}")
        tail = [x for x in r.stderr.splitlines() if x.strip()][-1:] if r.returncode > 0 else []
        raise ChildFailed("; ".join([why, *tail]))
    return r.stdout


def _noteworthy(line: str) -> bool:
    """Child log lines worth repeating: warnings about padding or attention, not the
    deprecation notices every transformers run prints."""
    low = line.lower()
    return "FutureWarning" not in line and "warnings.warn(" not in line and (
        "warning" in low or "padding" in low or "flash" in low)


def run_setup(setup: str, data: str, model: str, steps: int, out: Path, env: dict) -> dict:
    """One child run, measured; a failed child is recorded (the others still run)."""
    started = time.time()
    try:
        spawn(["--child", setup, "--data", data, "--model", model, "--steps", str(steps),
               "--out", str(out)], out, env)
        res = S.measure(out, steps)
    except ChildFailed as exc:
        res = {"failed": str(exc)[:300]}
        print(f"  {setup} failed: {res['failed']}", flush=True)
    res["wall_s"] = round(time.time() - started, 1)
    log = out / "child.log"
    res["warnings"] = sorted({x.strip()[:200] for x in log.read_text().splitlines()
                              if _noteworthy(x)}) if log.exists() else []
    return res


def summarize(runs: dict[str, list[dict]], ceilings: list[dict], coef: dict) -> dict:
    """Medians per set-up over its successful rounds, and the ratios between medians."""
    bf16 = statistics.median(c["bf16"] for c in ceilings)
    out: dict[str, dict] = {}
    for setup, all_runs in runs.items():
        rs = [r for r in all_runs if "failed" not in r]
        if not rs:
            out[setup] = {"failed": all_runs[0]["failed"], "tokens_per_s": None}
            continue
        tps = [r["tokens_per_s"] for r in rs]
        losses = [r["final_loss"] for r in rs]
        gflops = statistics.median(S.model_gflops(r, coef) for r in rs)
        out[setup] = {"tokens_per_s": statistics.median(tps), "min": min(tps), "max": max(tps),
                      "tokens_per_cpu_s": statistics.median(r["tokens_per_cpu_s"] for r in rs),
                      "load": statistics.median(r["load"] for r in rs),
                      "peak_mb": statistics.median(r["peak_mb"] for r in rs),
                      "final_loss": losses[0], "loss_same_each_round":
                      max(losses) - min(losses) < 1e-6, "gflops": gflops,
                      "of_bf16": gflops / bf16, "rounds": len(rs), "facts": rs[0]["facts"]}
    for ref, key in (("TRL tuned", "vs_tuned"), ("TRL quick-start", "vs_quick_start")):
        base = out.get(ref, {}).get("tokens_per_s")
        for s in out.values():
            s[key] = s["tokens_per_s"] / base if base and s["tokens_per_s"] else None
    return out


def print_table(summary: dict, title: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    cols = ("set-up", "real tok/s", "range", "vs TRL tuned", "vs quick-start", "peak RSS MB",
            "final loss", "model GFLOP/s", "of bf16 ceiling", "tok/CPU-s", "load")
    for col in cols:
        table.add_column(col, justify="left" if col == "set-up" else "right")
    for setup, s in summary.items():
        if "failed" in s:
            table.add_row(setup, "failed", *[""] * (len(cols) - 3), s["failed"][:40])
            continue
        ratio = [f"{s[k]:.2f}x" if s[k] is not None else "-" for k in ("vs_tuned",
                                                                       "vs_quick_start")]
        loss = f"{s['final_loss']:.4f}" + ("" if s["loss_same_each_round"] else " (varies!)")
        table.add_row(setup, f"{s['tokens_per_s']:.1f}", f"{s['min']:.0f}-{s['max']:.0f}",
                      *ratio, f"{s['peak_mb']:.0f}", loss, f"{s['gflops']:.1f}",
                      f"{s['of_bf16']:.0%}", f"{s['tokens_per_cpu_s']:.1f}", f"{s['load']:.1f}")
    Console(width=190).print(table)


def checks(runs: dict[str, list[dict]]) -> list[str]:
    """What would make the comparison unfair, said out loud."""
    ok = [r for rs in runs.values() for r in rs if "failed" not in r]
    notes = []
    batches = {tuple(r["batch_tokens"]) for r in ok}
    notes.append("same batches in every run: " + ("yes" if len(batches) == 1 else
                                                  f"NO ({len(batches)} different orders)"))
    cores = os.cpu_count() or 1
    busy = [r["load"] for r in ok if r["load"] > cores + 0.5]
    if busy:
        notes.append(f"{len(busy)} of {len(ok)} runs saw a load average above the {cores} "
                     f"cores (up to {max(busy):.1f}): other jobs shared the CPU, so wall-time "
                     "figures are noise; compare tok/CPU-s, or rerun on a quiet machine")
    for setup, rs in runs.items():
        for r in rs:
            if "failed" in r:
                notes.append(f"{setup} failed in a round: {r['failed']}")
        r = next((x for x in rs if "failed" not in x), None)
        if r is None:
            continue
        if r["trl_num_tokens"] is not None and r["trl_num_tokens"] != r["tokens"]:
            notes.append(f"{setup}: trainer's num_tokens {r['trl_num_tokens']:.0f} vs "
                         f"{r['tokens']} real tokens counted (the table uses the latter)")
        notes.extend(f"{setup} warned: {w}" for w in r["warnings"])
    return notes


def bench(a, model: str, env: dict, work: Path) -> dict:
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    setups = S.SETUPS + [s for s, on in zip(S.OPTIONAL, (a.fp32, a.trl_padded), strict=True)
                         if on]
    setups = [s for s in setups if not a.only or s in a.only]
    coef = S.flop_coefficients(model)
    results = {}
    for data in (["chat", "banking77"] if a.data == "both" else [a.data]):
        runs: dict[str, list[dict]] = {s: [] for s in setups}
        ceilings = []
        for rnd in range(a.rounds):
            order = setups if rnd % 2 == 0 else setups[::-1]
            here = work / data / f"round{rnd + 1}"
            ceilings.append(json.loads(spawn(["--child", "ceiling", "--device", device],
                                             here / "ceiling", env)))
            for setup in order:
                print(f"[{data}] round {rnd + 1}/{a.rounds}: {setup} ({a.steps} steps)...",
                      flush=True)
                out = here / setup.replace(" ", "_").replace(",", "")
                runs[setup].append(run_setup(setup, data, model, a.steps, out, env))
        summary = summarize(runs, ceilings, coef)
        title = (f"{data}: LoRA training throughput, {Path(model).name}, {a.steps} steps of "
                 f"{S.BATCH} examples, {device}, median of {a.rounds} round(s)")
        print_table(summary, title)
        bf16 = [round(c["bf16"]) for c in ceilings]
        fp32 = [round(c["fp32"]) for c in ceilings]
        print(f"matmul ceiling per round (2048^2): bf16 {bf16} GFLOP/s, fp32 {fp32} GFLOP/s")
        for setup, s in summary.items():
            print(f"  {setup}: {s.get('facts', 'failed')}")
        for note in checks(runs):
            print(f"  {note}")
        results[data] = {"summary": summary, "runs": runs, "ceilings": ceilings}
    return results


def rss_run(a, model: str, env: dict, work: Path) -> dict:
    """ftagent (defaults) for N steps on the banking77 data (or --data chat), current RSS
    per step."""
    from ftagent.tools.config.train_config import TrainConfig

    save = TrainConfig.model_fields["save_steps"].default
    data = "banking77" if a.data == "both" else a.data
    out = work / "rss"
    print(f"ftagent on {data} for {a.rss_steps} steps (checkpoints every {save})...",
          flush=True)
    spawn(["--child", "ftagent", "--data", data, "--model", model, "--steps",
           str(a.rss_steps), "--save-steps", str(save), "--out", str(out)], out, env)
    steps = [r for r in S.rows_of(out / S.STEPS_FILE) if "t" in r]
    at = {r["step"]: r["rss_mb"] for r in steps}
    n = steps[-1]["step"]
    warm = max(n // 10, min(20, n // 2))  # allocator and optimizer state settle first
    xs = [r["step"] for r in steps if r["step"] > warm]
    ys = [at[x] for x in xs]
    slope = statistics.linear_regression(xs, ys).slope if len(xs) > 1 else float("nan")
    shown = {s: at[s] for s in (10, 50, 100, 200, n) if s in at}
    print("current RSS (MB) at step: " + ", ".join(f"{s}: {v:.0f}" for s, v in shown.items()))
    print(f"slope after step {warm}: {slope:+.3f} MB/step "
          f"({slope * 100:+.1f} MB per 100 steps); peak RSS {steps[-1]['peak_rss_mb']:.0f} MB")
    plot = a.plot or ROOT / "runs" / "bench" / "train_rss.png"
    _plot_rss(steps, plot, warm, data)
    print(f"plot: {plot}")
    return {"steps": steps, "rss_at": shown, "slope_mb_per_step": slope, "warmup": warm}


def _plot_rss(steps: list[dict], path: Path, warm: int, data: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 3.5), dpi=100)
    ax.plot([r["step"] for r in steps], [r["rss_mb"] for r in steps], label="current RSS")
    ax.plot([r["step"] for r in steps], [r["peak_rss_mb"] for r in steps], "--",
            label="peak RSS")
    ax.axvline(warm, color="grey", lw=0.8, ls=":", label="end of warm-up")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("MB")
    ax.set_title(f"ftagent on the {data} bench data: memory per step")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)


def machine(env_info: dict) -> dict:
    import torch
    from ftagent.tools.train.model import use_bf16

    name = ""
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name:"):
                name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return {"cpu": name, "cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch": torch.__version__, "bf16": use_bf16("auto"), **env_info}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps per set-up")
    ap.add_argument("--rounds", type=int, default=2, help="rounds, order alternating")
    ap.add_argument("--data", choices=["chat", "banking77", "both"], default="both")
    ap.add_argument("--model", default=None, help="model folder (default: bundled SmolLM2)")
    ap.add_argument("--fp32", action="store_true", help="add the fp32 quick-start")
    ap.add_argument("--trl-padded", action="store_true",
                    help="add TRL tuned with padded rows (no dense mask over the batch)")
    ap.add_argument("--only", action="append", choices=S.SETUPS + S.OPTIONAL, default=[],
                    help="run only this set-up (repeatable; ratios need their reference)")
    ap.add_argument("--rss-steps", type=int, default=0,
                    help="instead: RSS over N steps of ftagent on banking77 (or --data chat)")
    ap.add_argument("--plot", type=Path, default=None, help="where --rss-steps plots")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--save-steps", type=int, default=None, help=argparse.SUPPRESS)
    ap.add_argument("--device", default="cpu", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child == "ceiling":
        print(json.dumps(S.matmul_ceiling(a.device)))
        return
    if a.child:
        S.run_child(a.child, S.DATA[a.data], a.model, a.out, a.steps, a.save_steps)
        return
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    model = a.model
    if model is None:
        from ftagent.tools.models import resolve_model

        model = str(resolve_model("smollm2-135m-instruct").path)
    env, env_info = child_env()
    info = machine(env_info)
    print(f"CPU {info['cpu']}, {info['cores']} cores, torch {info['torch']} with "
          f"{info['torch_threads']} threads, bf16: {info['bf16']}")
    print(f"every child's environment: training_env() sets {env_info['set_by_training_env']}"
          f"; thread variables {env_info['threads_env'] or 'unset'}")
    with tempfile.TemporaryDirectory() as tmp:
        if a.rss_steps:
            results = {"rss": rss_run(a, model, env, Path(tmp))}
        else:
            results = bench(a, model, env, Path(tmp))
    if a.json:
        a.json.write_text(json.dumps({"machine": info, "model": model, "steps": a.steps,
                                      "rounds": a.rounds, "results": results}, indent=1))


if __name__ == "__main__":
    main()
