"""Why each default in a planned config has its value, as one line per field for the YAML
(`dump_yaml(..., why=...)`), so a person editing the file sees the reasoning. Pure."""

from __future__ import annotations

from ftagent.tools.config.train_config import TrainConfig


def config_rationale(cfg: TrainConfig, plan: dict, n_train: int, attempt: int = 1) -> dict:
    t, e = plan["training"], plan["estimates"]
    size = plan["params"] / 1e9
    model = f"{size:.1f}B" if size >= 1 else f"{size * 1e3:.0f}M"
    retry = f", x{1 + 0.5 * (attempt - 1):g} for attempt {attempt}" if attempt > 1 else ""
    why = {
        "method": f"{plan['adapter']} from the plan (plan.md, Approach: memory headroom and "
        "data size decide it)",
        "num_epochs": f"{n_train:,} training examples: 3 epochs under 500, 2 under 5,000, "
        f"1 above (more passes overfit large sets){retry}",
        "learning_rate": (
            f"{cfg.method} on a {model} model: "
            + ("full fine-tuning needs a low rate (5e-5 under 1B, 2e-5 above)"
               if cfg.method == "full" else
               "adapters take 2e-4; models under 0.5B learn faster with 1e-3")
        ),
        "batch_size": f"the largest micro-batch whose estimate fits: {e['memory_gb']} GB of "
        f"{e['usable_gb']:g} GB usable",
        "grad_accum": f"effective batch {cfg.batch_size * cfg.grad_accum}: 8 under 1,000 "
        "examples, 16 under 10,000, 32 above",
        "max_length": "the longest example rounded up to a multiple of 64 (capped at 2048)",
        "gradient_checkpointing": "on: needed to fit memory" if cfg.gradient_checkpointing
        else "off: memory fits without it, and it costs ~30% speed",
        "save_steps": "two checkpoints per epoch: a killed run loses at most half an epoch",
        "bf16": f"precision {plan['precision']} from the hardware probe",
        "evaluation": f"targets from the plan for a {plan['task_type'].replace('_', ' ')} task",
    }
    if cfg.method != "full" and t.get("lora_r"):
        why["lora.r"] = (f"{cfg.lora.r}: 8 under 500 examples, 16 above; 32-64 for "
                         "knowledge-heavy tasks with 5,000+")
        why["lora.alpha"] = "2 x r, the usual scaling"
        why["lora.target_modules"] = ("attention projections; all linear layers for "
                                      "knowledge-heavy tasks with 1,000+ examples and for "
                                      "classifiers")
    return why
