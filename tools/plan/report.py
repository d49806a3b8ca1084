"""plan.md: the plan in the sections a reviewer expects (template in prompts/plan.md)."""

from __future__ import annotations

from ftagent.tools.plan.types import Item, Plan


def _bullets(items: list[str]) -> str:
    return "\n".join(f"- {i}" for i in items)


def _items(items: list[Item]) -> str:
    return "\n".join(f"- {i.text}" + (f" {i.detail}" if i.detail else "") for i in items)


def _training_rows(p: Plan) -> str:
    t = p.training
    rows = [
        ("method", f"{p.adapter.upper()}" + (f", objective {p.objective.upper()}"
                                             if p.objective != "sft" else "")),
        ("precision", p.precision),
        ("epochs", f"{t.epochs:g}"),
        ("learning rate", f"{t.learning_rate:g}"),
        ("micro-batch x accumulation", f"{t.batch_size} x {t.grad_accum}"),
        ("max length", str(t.max_length)),
        ("gradient checkpointing", "on" if t.gradient_checkpointing else "off"),
    ]
    if t.lora_r:
        rows.append(("LoRA r / alpha", f"{t.lora_r} / {t.lora_alpha}"))
        rows.append(("LoRA targets", ", ".join(t.target_modules or [])))
    if t.dpo_beta:
        rows.append(("DPO beta", f"{t.dpo_beta:g}"))
    rows.append(("trainable parameters", f"{p.estimates.trainable_params:,}"))
    return "\n".join(f"| {k} | {v} |" for k, v in rows)


def _cost(p: Plan) -> str:
    e = p.estimates
    lines = [f"- Compute: {e.tokens:,} training tokens, about {e.train_hours:.2g} h of training "
             f"on {p.hardware_summary}."]
    if e.gpu_hours or e.rate_usd_per_hour:  # GPUs, however short the run
        lines.append(f"- {e.gpu_hours:.2g} GPU-hours x ${e.rate_usd_per_hour:g}/h = "
                     f"**${e.cost_usd:,.2f}** (set the rate with --rate).")
    else:
        lines.append("- On this machine's CPU: no GPU cost.")
    return "\n".join(lines)


def _section(title: str, lines: list[str]) -> str:
    return f"\n## {title}\n{_bullets(lines)}\n" if lines else ""


def plan_markdown(p: Plan) -> str:
    from ftagent.prompts import load

    method_line = p.method.upper() if p.method == p.adapter else (
        f"{p.method.upper()} ({p.adapter.upper()})")
    prompting = ""
    if p.prompting_first:
        prompting = "\n### Try prompting first\n"
        if p.few_shot_prompt:
            prompting += "A few-shot prompt built from your data:\n\n```text\n" + (
                p.few_shot_prompt + "\n```\n")
    status = (f"Fits: about {p.estimated_memory_gb} GB of {p.memory_budget_gb:g} GB usable."
              if p.fits else f"**Does not fit**: {p.estimated_memory_gb} GB needed, "
              f"{p.memory_budget_gb:g} GB usable.")
    return load("plan.md").format(
        goal=p.goal,
        method_line=method_line,
        model=p.model,
        task=p.task_type.replace("_", " "),
        n_examples=f"{p.n_examples:,}",
        status=status,
        approach=_bullets(p.reasons),
        prompting=prompting,
        dataset=_items(p.dataset_requirements),
        hardware=_items(p.hardware_requirements),
        training=_training_rows(p),
        metric=p.targets.primary_metric,
        min_gain=f"{p.targets.min_gain:.2f}",
        loss_target=", and its held-out answer loss is lower" if p.targets.loss_must_drop else "",
        floors="".join(f", and reaches **{m} >= {v:g}**" for m, v in p.targets.floors.items()),
        baseline=p.targets.baseline,
        metrics=", ".join(p.eval_metrics),
        cost=_cost(p),
        timeline="\n".join(f"{i}. {x.text}: {x.detail}" for i, x in enumerate(p.timeline, 1)),
        risks="\n".join(f"| {r.text} | {r.detail} |" for r in p.risks),
        alternatives=_section("Alternatives considered", p.alternatives),
        warnings=_section("Warnings", p.warnings),
        feedback=_section("Changed after your feedback", p.feedback_applied),
    )
