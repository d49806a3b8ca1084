"""LoRA, QLoRA, full fine-tuning and DPO, a few steps each through ftagent's real trainer
(`python -m ftagent.tools.train CONFIG`, a child process per run so each has its own CUDA
peak), checked for a finite, falling loss, with the peak memory against the estimator's
prediction for the micro-batches the run computed."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

from evals.gpu.data import ROOT, dpo_file, sft_file

# Learning rates that move a random-weight model visibly within a few steps (the check
# asks whether the loss falls, not for a good model).
METHODS = {
    "lora_sft": {"method": "lora", "learning_rate": 1e-3},
    "qlora_nf4": {"method": "qlora", "learning_rate": 1e-3},
    "full_sft": {"method": "full", "learning_rate": 1e-4},
    "dpo": {"method": "lora", "objective": "dpo", "learning_rate": 5e-4},
}


def config_for(ctx, name: str, model: Path, train: Path, **change):
    from ftagent.tools.config.train_config import TrainConfig

    spec = {**METHODS[name], **change}
    dpo = spec.get("objective") == "dpo"
    fields = dict(model=str(model), train_file=str(train),
                  output_dir=str(ctx.work / "runs" / name), max_steps=ctx.size.steps,
                  batch_size=ctx.size.dpo_batch if dpo else ctx.size.batch,
                  max_length=ctx.size.max_length, warmup_ratio=0.0, lr_scheduler="constant",
                  save_steps=10_000, report_to=[], seed=42)
    return TrainConfig(**{**fields, **spec})


def run_child(cmd: list[str], timeout: float) -> None:
    """A training child with ftagent's own job environment; its log's tail on failure."""
    from ftagent.tools.train.jobs import training_env

    r = subprocess.run(cmd, cwd=ROOT, env=training_env(), capture_output=True, text=True,
                       timeout=timeout)
    if r.returncode != 0:
        raise RuntimeError(f"training exited {r.returncode}: {r.stderr[-1500:]}")


def metrics(out: Path) -> dict:
    """Losses per step and the peak memory the trainer logged (CUDA allocator's peak on a
    GPU, else peak RSS)."""
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines() if x]
    logs = [r for r in rows if r.get("event") == "log" and "loss" in r]
    cuda = [r["cuda_peak_mb"] for r in logs if "cuda_peak_mb" in r]
    peak_mb = max(cuda) if cuda else max(r.get("peak_rss_mb", 0) for r in logs)
    return {"losses": [r["loss"] for r in logs], "peak_gb": peak_mb / 1024,
            "peak_kind": "cuda max_memory_allocated" if cuda else "peak RSS",
            "events": [r for r in rows if r.get("event") in ("recovered", "warning", "anomaly")]}


def loss_checks(losses: list[float]) -> dict:
    """Finite at every step, and falling: the mean of the last half below the first
    half's (one noisy step neither passes nor fails it)."""
    half = max(1, len(losses) // 2)
    finite = bool(losses) and all(math.isfinite(x) for x in losses)
    falling = finite and len(losses) >= 2 and (
        sum(losses[-half:]) / half < sum(losses[:half]) / half)
    return {"loss_finite": finite, "loss_falling": falling}


def estimate(cfg, steps: int, device: str) -> dict:
    """The estimator's peak for this run: for SFT the largest of the micro-batches the
    seeded sampler handed the run (evals/bench/estimator.py replays it), and for the
    whole run (the file's longest row)."""
    from ftagent.tools.data.tokens import file_token_facts
    from ftagent.tools.plan.estimate import (
        estimate_for,
        settings_of,
        shape_from_config,
        train_precision,
    )
    from ftagent.tools.train.model import use_bf16
    from transformers import AutoTokenizer

    from evals.bench.estimator import batch_facts, row_lengths, run_batches

    tok = AutoTokenizer.from_pretrained(cfg.model)
    shape = shape_from_config(json.loads((Path(cfg.model) / "config.json").read_text()))
    run = settings_of(cfg, train_precision(cfg.bf16, use_bf16("auto")))
    facts = file_token_facts(cfg.train_file, tok)
    dev = "cuda" if device == "cuda" else "cpu"
    whole = estimate_for(shape, run, facts, dev)
    out = {"precision": run.precision, "whole_run_gb": whole.total_gb, "gb": whole.total_gb,
           "parts_gb": whole.parts_gb, "of": "whole run (the file's longest row)"}
    if cfg.objective == "sft":
        lengths = row_lengths(cfg.train_file, tok)
        ests = [estimate_for(shape, run, batch_facts(facts, lengths, rows), dev)
                for rows in run_batches(len(lengths), cfg.batch_size, steps, cfg.seed)]
        top = max(ests, key=lambda e: e.total_gb)
        out.update(gb=top.total_gb, parts_gb=top.parts_gb, peak_tokens=top.peak_tokens,
                   of="the largest micro-batch the run computed")
    return out


def train_method(ctx, name: str) -> dict:
    from ftagent.tools.config.train_config import save_config

    if METHODS[name]["method"] == "qlora":
        from evals.gpu.environment import importable

        why = importable("bitsandbytes")
        if why != "yes":
            from evals.gpu.runner import Skip

            raise Skip(f"bitsandbytes {why}; carry its wheel, or run `--only qlora_nf4` "
                       "in a second call")
    model = ctx.model(ctx.size.train_model)
    if METHODS[name].get("objective") == "dpo":
        train = dpo_file(ctx.work, model)
    else:
        train = sft_file(ctx.work, 2 * ctx.size.steps * ctx.size.batch)
    cfg = config_for(ctx, name, model, train)
    path = save_config(cfg, ctx.work / "configs" / f"{name}.yaml")
    run_child([sys.executable, "-m", "ftagent.tools.train", str(path)], ctx.left_s())
    m = metrics(Path(cfg.output_dir))
    est = estimate(cfg, ctx.size.steps, ctx.device)
    error = (est["gb"] - m["peak_gb"]) / m["peak_gb"] if m["peak_gb"] else None
    result = json.loads((Path(cfg.output_dir) / "result.json").read_text())
    checks = {**loss_checks(m["losses"]), "all_steps": result["global_step"] == cfg.max_steps}
    summary = [f"- {ctx.size.train_model}, {cfg.method} {cfg.objective}, {est['precision']}, "
               f"batch {cfg.batch_size}, {cfg.max_steps} steps, lr {cfg.learning_rate:g}",
               "- loss per step: " + ", ".join(f"{x:.3f}" for x in m["losses"]),
               f"- peak memory ({m['peak_kind']}): {m['peak_gb']:.2f} GB; estimate "
               f"{est['gb']:.2f} GB ({est['of']}): error "
               + (f"{error:+.0%}" if error is not None else "n/a")
               + f"; whole-run estimate {est['whole_run_gb']:.2f} GB",
               "- estimate parts (GB): " + ", ".join(f"{k} {v:.2f}" for k, v in
                                                     est["parts_gb"].items())]
    return {"model": ctx.size.train_model, "config": {k: getattr(cfg, k) for k in (
                "method", "objective", "batch_size", "max_steps", "learning_rate")},
            **m, "estimate": est, "error": error, "effective": result.get("effective"),
            "train_runtime_s": result.get("train_runtime_s"), "checks": checks,
            "summary": summary}
