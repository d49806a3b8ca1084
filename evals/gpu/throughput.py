"""ftagent's trainer against TRL tuned (padding-free, no gradient checkpointing, bf16
weights) on the same GPU, data and steps: the set-ups, children, token counting and
model-FLOP accounting of evals/bench/train_throughput.py, reused as they are, one round
per model; MFU against the bf16 matmul ceiling measured in the same run."""

from __future__ import annotations

import time

SETUPS = ("TRL tuned", "ftagent")


def run(ctx) -> dict:
    from evals.bench import throughput_setups as S
    from evals.bench import train_throughput as T

    env, env_info = T.child_env()
    ceiling = S.matmul_ceiling(ctx.device, ctx.size.ceiling_s)
    per_model, summary, checks = {}, [], {}
    summary.append(f"- bf16 matmul ceiling (2048^2, this run): {ceiling['bf16'] / 1e3:.1f} "
                   f"TFLOP/s; fp32 {ceiling['fp32'] / 1e3:.1f} TFLOP/s")
    for name in ctx.size.throughput_models:
        if time.monotonic() > ctx.deadline:
            per_model[name] = {"skipped": "budget"}
            summary.append(f"- {name}: skipped: budget")
            continue
        model = str(ctx.model(name))
        runs = {}
        for setup in SETUPS:
            out = ctx.work / "throughput" / name / setup.replace(" ", "_").replace(",", "")
            runs[setup] = [T.run_setup(setup, "chat", model, ctx.size.throughput_steps, out,
                                       env)]
        table = T.summarize(runs, [ceiling], S.flop_coefficients(model))
        notes = T.checks(runs)
        per_model[name] = {"summary": table, "notes": notes}
        ran = [r[0] for r in runs.values() if "failed" not in r[0]]
        if len(ran) == len(runs):
            checks[f"{name}: same batches"] = len({tuple(r["batch_tokens"]) for r in ran}) == 1
        for setup, s in table.items():
            ok = "failed" not in s
            checks[f"{name}: {setup} ran"] = ok
            summary.append(f"- {name}, {setup}: " + (
                f"{s['tokens_per_s']:.0f} real tokens/s, {s['vs_tuned']:.2f}x TRL tuned, "
                f"MFU {s['of_bf16']:.1%} of the bf16 ceiling, peak {s['peak_mb']:.0f} MB, "
                f"final loss {s['final_loss']:.3f}" if ok else f"failed: {s['failed']}"))
        summary.extend(f"  - {note}" for note in notes)
    return {"ceiling_gflops": ceiling, "steps": ctx.size.throughput_steps, "batch": S.BATCH,
            "env": env_info, "models": per_model, "checks": checks, "summary": summary}
