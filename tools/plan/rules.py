"""The planner: from goal, data facts, hardware and constraints to a plan with reasons.

Pure logic (`make_plan`): every input is a plain value, so the rules are testable
without a model and scored by `python -m evals.planner`. The decisions themselves live
in `tools.plan.decide`, the plan's text sections in `tools.plan.sections`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ftagent.tools.config.train_config import fit_max_length
from ftagent.tools.plan.decide import (
    apply_feedback,
    choose_adapter,
    deadline_h,
    epochs_for,
    model_limits,
    prompting_first,
    rank_key,
    run_settings,
    safety_mix_for,
    size,
    targets_for,
    training_for,
    where,
)
from ftagent.tools.plan.fit import Fit, Timing, download_gb, timing
from ftagent.tools.plan.sections import (
    dataset_requirements,
    few_shot_prompt,
    hardware_requirements,
    risks,
    timeline,
)
from ftagent.tools.plan.types import Constraints, Estimates, Plan, PlanInputs
from ftagent.tools.registry import ModelCard, known_models, lookup
from ftagent.tools.tasks import classify_task

TRAIN_SHARE = 0.8  # the 80/10/10 split
MAX_PLAN_LENGTH = 32768


class Option:
    """One candidate base model with how it would train."""

    def __init__(self, card: ModelCard, fit: Fit, why: str, t: Timing):
        self.card, self.fit, self.why, self.timing = card, fit, why, t


def _objective(task: str, method: str | None) -> str:
    if method == "dpo":
        return "dpo"
    return "dpo" if task == "preference" and method in (None, "lora", "qlora", "full") else "sft"


def _option(card, inputs, c, task, seq, objective) -> Option:
    n, hw = inputs.data.n_examples, inputs.hardware
    n_train = int(n * TRAIN_SHARE)
    tokens = inputs.data.token_facts()
    fixed = c.method if c.method in ("lora", "qlora", "full") else None
    fit, why = choose_adapter(card, hw, seq, task, n, objective, fixed, tokens, n_train,
                              inputs.data.n_labels)
    epochs = 1.0 if objective == "dpo" else epochs_for(n_train, inputs.data.n_labels)
    settings = run_settings(card, hw, fit.adapter, objective, task, n_train, seq,
                            inputs.data.n_labels)
    t = timing(card.shape, settings, fit, hw, n_train, tokens, epochs, c.rate_usd_per_hour)
    return Option(card, fit, why, t)


def _pick_model(inputs: PlanInputs, c: Constraints, task: str, seq: int, objective: str):
    """The best registry model for the task and hardware, and why (and why not others)."""
    hw = inputs.hardware
    cap, cap_why = model_limits(task, c, inputs.data.kind)
    floor = c.min_params_b or 0.0
    deadline = deadline_h(c, hw)
    pool = inputs.candidates if inputs.candidates is not None else known_models()
    viable, too_big, restricted, short = [], [], [], []
    for card in pool:
        b = card.params / 1e9
        if c.licence == "permissive" and card.licence_kind != "permissive":
            restricted.append(card.family)
            continue
        if card.context < inputs.data.tokens_p99:
            short.append(card.family)
            continue
        if b < floor:
            continue
        opt = _option(card, inputs, c, task, seq, objective)
        if not opt.fit.fits or opt.timing.train_hours > deadline:
            continue
        if c.budget_usd is not None and opt.timing.cost_usd > c.budget_usd:
            continue
        (viable if b <= cap else too_big).append(opt)
    reasons = []
    if restricted:
        reasons.append(f"Permissive licences only (Apache-2.0, MIT), as asked: "
                       f"{', '.join(sorted(set(restricted)))} left out.")
    if short:
        reasons.append(f"The data reaches {inputs.data.tokens_p99:,} tokens at p99: "
                       f"{', '.join(sorted(set(short)))} have a shorter context.")
    if viable:
        best = max(viable, key=lambda o: rank_key(o.card, task))
        reasons.append(
            f"Base model {best.card.id} ({size(best.card.params)}, {best.card.licence}): "
            f"the best of {len(viable)} registry model{'s' if len(viable) > 1 else ''} that "
            f"fit{'' if len(viable) > 1 else 's'} {where(hw)} and train within "
            f"{deadline:g} h" + (f" and ${c.budget_usd:g}" if c.budget_usd is not None else "")
            + f"; {'; '.join(cap_why)}."
        )
        if best.card.specialty == task:
            reasons.append(f"{best.card.id} is a {task} specialist.")
        return best, reasons, viable
    if too_big:
        best = min(too_big, key=lambda o: o.card.params)
        reasons.append(
            f"Base model {best.card.id} ({size(best.card.params)}): nothing under "
            f"{cap:g}B fits the limits, so the smallest model that does."
        )
        return best, reasons, too_big
    return None, [], []


@dataclass
class _Notes:
    """What the plan tells a person besides its numbers, collected in order as each step
    decides: the order of `reasons` is the order a reader follows the decisions."""

    reasons: list[str]
    warnings: list[str] = field(default_factory=list)
    alternatives: list[str] = field(default_factory=list)


def make_plan(inputs: PlanInputs) -> Plan:
    """The plan for a goal: feedback applied to the constraints, the task understood, a
    base model and method chosen, and every choice explained in the plan's notes."""
    data = inputs.data
    known = known_models()
    previous = lookup(inputs.previous_model) if inputs.previous_model else None
    c, applied = apply_feedback(
        inputs.constraints, inputs.feedback, previous.params / 1e9 if previous else None, known
    )
    understood = classify_task(inputs.goal, data, c.teacher)
    task = understood.task_type
    objective = _objective(task, c.method)
    # The longest row, as the config will set it from the prepared data (padding-free rows
    # cost their own length, so a long max_length costs nothing by itself).
    longest = max(data.tokens_max, data.tokens.longest if data.tokens else 0)
    seq = fit_max_length(longest or data.tokens_p99 or None, cap=MAX_PLAN_LENGTH)
    notes = _Notes(reasons=[f"Task: {task.replace('_', ' ')} ({'; '.join(understood.reasons)})."])
    chosen, viable = _choose_model(inputs, c, task, seq, objective, known, notes)
    notes.reasons.append(chosen.why)
    method = _method(chosen, objective, understood, c, data, notes)
    notes.warnings += _fit_warnings(chosen, c, inputs.hardware)
    first, first_why = prompting_first(task, data, c)
    if first_why:
        notes.reasons.append(first_why)
    notes.reasons += _hardware_reasons(chosen.fit, inputs.hardware)
    notes.alternatives += _alternatives(viable, task, objective, data)
    notes.warnings += _readiness_warnings(inputs, chosen.card, method)
    return _assemble(inputs, c, understood, objective, chosen, method, seq, first, notes,
                     applied)


def _choose_model(inputs: PlanInputs, c: Constraints, task: str, seq: int, objective: str,
                  known: list[ModelCard], notes: _Notes) -> tuple[Option, list[Option]]:
    """The base model and the other viable ones. A model the person named (or that
    feedback switched to) is taken as given; otherwise the registry is searched, and when
    nothing fits the smallest model is planned with a warning rather than no plan."""
    named = lookup(c.model) if c.model and c.model != inputs.constraints.model else None
    fixed_card = named or inputs.model or (lookup(c.model) if c.model else None)
    if fixed_card is not None:
        chosen = _option(fixed_card, inputs, c, task, seq, objective)
        notes.reasons.append(f"Base model {fixed_card.id} ({size(fixed_card.params)}) as given.")
        return chosen, []
    chosen, why, viable = _pick_model(inputs, c, task, seq, objective)
    if chosen is None:
        fallback = lookup("smollm2-135m-instruct") or known[0]
        chosen = _option(fallback, inputs, c, task, seq, objective)
        notes.warnings.append(f"No registry model fits {where(inputs.hardware)} within the "
                              f"limits; planning {fallback.id}, the smallest, which may not "
                              "meet the goal.")
    notes.reasons += why
    return chosen, viable


def _method(chosen: Option, objective: str, understood, c: Constraints, data,
            notes: _Notes) -> str:
    """The training method: the fitted adapter, unless the objective (DPO) or the task
    (distillation) calls for a method of its own; those say why in the notes."""
    card, fit = chosen.card, chosen.fit
    method = fit.adapter
    if objective == "dpo":
        method = "dpo"
        notes.reasons.append(
            f"DPO: the data holds {data.n_examples:,} chosen/rejected pairs; DPO "
            "learns the preference directly, with the adapter disabled as the "
            "reference model (no second copy in memory).")
    elif understood.task_type == "distillation" or c.method == "distillation":
        method = "distillation"
        teacher = understood.teacher or c.teacher or "the teacher"
        notes.reasons.append(
            f"Distillation: {teacher} writes answers for the {data.n_examples:,} "
            f"prompts, then the {size(card.params)} student is trained on them "
            f"({fit.adapter.upper()}).")
    return method


def _fit_warnings(chosen: Option, c: Constraints, hw) -> list[str]:
    """Warnings when the chosen plan does not fit the memory or the deadline: planned
    anyway, so the person sees the gap instead of getting no plan."""
    fit, warnings = chosen.fit, []
    if not fit.fits:
        warnings.append(
            f"Needs {fit.memory_gb} GB, more than the {fit.usable_gb:g} GB usable."
            if fit.memory_gb > fit.usable_gb else
            f"Needs {fit.memory_gb} GB of {fit.usable_gb:g} GB usable, with the frozen base "
            "taking over half: too little headroom to plan on."
        )
    hours, limit = chosen.timing.train_hours, deadline_h(c, hw)
    if hours > limit:
        took = f"{hours / 24:.0f} days" if hours >= 48 else f"{hours:.0f} hours"
        warnings.append(f"Training would take about {took} on {where(hw)}, past the "
                        f"{limit:g} h deadline: use a GPU or a smaller model.")
    return warnings


def _hardware_reasons(fit: Fit, hw) -> list[str]:
    """Why this precision and device layout: choices a person would otherwise wonder at
    (no bf16 on an older GPU, several GPUs)."""
    reasons = []
    if fit.precision == "bf16":
        reasons.append(f"bfloat16: {where(hw)} supports it natively (half the memory of fp32, "
                       "same range).")
    elif fit.precision == "fp16" and hw.gpus:
        reasons.append(f"fp16 with loss scaling: {hw.gpus[0].name} (compute "
                       f"{hw.gpus[0].compute_capability}) has no bfloat16.")
    if fit.strategy != "single":
        reasons.append(f"{fit.strategy.upper()} over {fit.n_devices} GPUs.")
    return reasons


def _alternatives(viable: list[Option], task: str, objective: str, data) -> list[str]:
    """The runners-up (and prompt tuning for a small style task), so a person who
    disagrees with the choice has somewhere to go."""
    alternatives = []
    for o in sorted(viable, key=lambda o: rank_key(o.card, task), reverse=True)[1:3]:
        alternatives.append(f"{o.card.id} ({size(o.card.params)}, {o.fit.adapter.upper()}, "
                            f"{o.fit.memory_gb} GB, ~{o.timing.train_hours:.2g} h)")
    if task == "style" and objective == "sft" and data.n_examples < 500:
        alternatives.append(
            f"Prompt tuning ({data.n_examples:,} style examples): PEFT learns 20 virtual "
            "tokens instead of LoRA weights, the cheapest option for a small style adjustment "
            "(nothing to merge; the base stays untouched). Set `method: prompt_tuning` and "
            "`learning_rate: 0.01` in config.yaml (prefix tuning: `method: prefix_tuning`).")
    return alternatives


def _readiness_warnings(inputs: PlanInputs, card: ModelCard, method: str) -> list[str]:
    """What must happen before training can start: a download, or answers for prompts."""
    warnings = []
    given = inputs.model is not None and card.id == inputs.model.id  # resolved: it is here
    if (inputs.local_ids and not given and card.id not in inputs.local_ids
            and card.local not in inputs.local_ids):
        warnings.append(f"{card.id} is not on this machine.")
    if inputs.data.kind == "prompts" and method != "distillation":
        warnings.append("The data has prompts only: name a teacher to distil from, or add "
                        "answers.")
    return warnings


def _assemble(inputs: PlanInputs, c: Constraints, understood, objective: str, chosen: Option,
              method: str, seq: int, first: bool, notes: _Notes, applied) -> Plan:
    """The Plan from the decisions: training settings, targets, safety mix, estimates and
    the text sections are derived here, all from the same chosen model and fit."""
    data, hw = inputs.data, inputs.hardware
    task, card, fit, t = understood.task_type, chosen.card, chosen.fit, chosen.timing
    n_train = int(data.n_examples * TRAIN_SHARE)
    training = training_for(card, fit, objective, task, n_train, seq, inputs.data.n_labels)
    # A distilled student is judged on the task it learns (the goal's other words), with
    # the teacher's answers as references.
    judged = (next((t for t in understood.secondary if t not in ("distillation", "preference")),
                   "chat") if task == "distillation" else task)
    targets, metrics = targets_for(judged, c)
    mix, mix_why = safety_mix_for(task, data.kind, c)
    if mix_why:
        notes.reasons.append(mix_why)
    dl = download_gb(card.params)
    local = (card.local is not None or card.id in inputs.local_ids
             or (inputs.model is not None and card.id == inputs.model.id))
    return Plan(
        goal=inputs.goal,
        task_type=task,
        secondary_tasks=understood.secondary,
        n_examples=data.n_examples,
        prompting_first=first,
        few_shot_prompt=few_shot_prompt(data) if first else None,
        method=method,
        adapter=fit.adapter,
        objective=objective,
        model=card.id,
        model_card=card,
        model_local=local,
        strategy=fit.strategy,
        n_devices=fit.n_devices,
        precision=fit.precision,
        fits=fit.fits,
        estimated_memory_gb=fit.memory_gb,
        memory_budget_gb=fit.usable_gb,
        training=training,
        estimates=Estimates(
            memory_gb=fit.memory_gb, usable_gb=fit.usable_gb, memory_parts_gb=fit.parts_gb,
            trainable_params=fit.trainable_params, tokens=t.tokens, train_hours=t.train_hours,
            gpu_hours=t.gpu_hours, rate_usd_per_hour=t.rate_usd_per_hour, cost_usd=t.cost_usd,
            download_gb=dl,
        ),
        targets=targets,
        safety_mix=mix,
        eval_metrics=metrics,
        dataset_requirements=dataset_requirements(task, data, seq),
        hardware_requirements=hardware_requirements(hw, fit, card, local, dl),
        timeline=timeline(t, data.n_examples, first, objective),
        risks=risks(task, data, fit, card, seq, hw, objective),
        reasons=notes.reasons,
        alternatives=notes.alternatives,
        warnings=notes.warnings,
        feedback_applied=applied,
        hardware_summary=where(hw),
        data=data,
    )
