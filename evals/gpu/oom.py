"""The out-of-memory back-off, triggered for real: ftagent's trainer in a child whose CUDA
allocator is capped (torch.cuda.set_per_process_memory_fraction: the allocator raises a
real torch.OutOfMemoryError past the cap) at a micro-batch that cannot fit. The recipe
must halve the micro-batch, double the accumulation and finish every step with the same
examples per step.

The cap sits between the estimator's peak for the oversized micro-batch and for half of
it with gradient checkpointing (what the first back-off runs): their geometric mean, so
the estimate may be off by the square root of their ratio either way and the check still
means what it says."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

from evals.gpu.data import sft_file
from evals.gpu.training import config_for, loss_checks, metrics, run_child

CHILD = ("import sys, torch; torch.cuda.set_per_process_memory_fraction({fraction}); "
         "from ftagent.tools.train.recipe import main; sys.exit(main([{config!r}]))")


def run(ctx) -> dict:
    import torch
    from ftagent.tools.config.train_config import save_config
    from ftagent.tools.data.tokens import file_token_facts
    from ftagent.tools.plan.estimate import estimate_for, settings_of, shape_from_config
    from transformers import AutoTokenizer

    model = ctx.model(ctx.size.small_model)
    big = ctx.size.oom_batch
    steps = 3
    train = sft_file(ctx.work, big * steps)
    cfg = config_for(ctx, "lora_sft", model, train, batch_size=big, max_steps=steps,
                     save_steps=1, gradient_checkpointing=False)
    cfg = cfg.model_copy(update={"output_dir": str(ctx.work / "runs" / "oom_backoff")})
    shape = shape_from_config(json.loads((model / "config.json").read_text()))
    facts = file_token_facts(train, AutoTokenizer.from_pretrained(model))
    run_big = settings_of(cfg, "bf16")
    full = estimate_for(shape, run_big, facts, "cuda").total_gb
    half = estimate_for(shape, run_big.model_copy(update={
        "batch": big // 2, "gradient_checkpointing": True}), facts, "cuda").total_gb
    cap_gb = math.sqrt(full * half)
    total_gb = torch.cuda.get_device_properties(0).total_memory / 2**30
    fraction = min(0.95, cap_gb / total_gb)
    path = save_config(cfg, ctx.work / "configs" / "oom_backoff.yaml")
    run_child([sys.executable, "-c", CHILD.format(fraction=fraction, config=str(path))],
              ctx.left_s())
    m = metrics(Path(cfg.output_dir))
    result = json.loads((Path(cfg.output_dir) / "result.json").read_text())
    eff = result["effective"]
    recovered = [e for e in m["events"] if e.get("event") == "recovered"]
    checks = {"oom_hit_and_recovered": bool(recovered),
              "micro_batch_halved": eff["batch_size"] < big,
              "same_examples_per_step": eff["batch_size"] * eff["grad_accum"] == big,
              "all_steps": result["global_step"] == steps, **loss_checks(m["losses"])}
    summary = [f"- {ctx.size.small_model}, micro-batch {big}, allocator capped at "
               f"{cap_gb:.1f} GB ({fraction:.1%} of {total_gb:.0f} GB; estimates: batch {big} "
               f"{full:.1f} GB, batch {big // 2} checkpointed {half:.1f} GB)",
               *[f"- back-off: {e['message']}" for e in recovered],
               f"- finished with micro-batch {eff['batch_size']} x accumulation "
               f"{eff['grad_accum']}, gradient checkpointing {eff['gradient_checkpointing']}, "
               f"{result['global_step']} steps; peak {m['peak_gb']:.2f} GB"]
    return {"cap_gb": cap_gb, "fraction": fraction, "estimate_full_gb": full,
            "estimate_half_checkpointed_gb": half, "effective": eff, "recovered": recovered,
            "losses": m["losses"], "peak_gb": m["peak_gb"], "checks": checks,
            "summary": summary}
