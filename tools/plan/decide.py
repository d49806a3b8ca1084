"""The planner's decisions, one function each: prompting first, how to train (method and
memory fit), which base model, which hyperparameters, which targets.

Pure logic over plain values; every decision returns the sentence that justifies it,
naming the inputs that decided it.
"""

from __future__ import annotations

import re

from ftagent.tools.data.facts import DataFacts, TokenFacts
from ftagent.tools.evaluate.probe_verdicts import SafetyLimits
from ftagent.tools.hardware import Hardware
from ftagent.tools.plan.estimate import GB, WEIGHT_BYTES, RunSettings, train_precision
from ftagent.tools.plan.fit import Fit, precision_for, try_fit, usable_gb
from ftagent.tools.plan.types import Constraints, Targets, Training
from ftagent.tools.registry import ModelCard, lora_targets

# Largest base model worth training per task on one GPU: beyond it gains are small and
# serving costs grow (guidance: small models do narrow tasks well).
TASK_MAX_B = {
    "classification": 1.7,
    "extraction": 3.5,
    "style": 3.5,
    "distillation": 3.5,
    "summarization": 8.5,
    "chat": 8.5,
    "domain_knowledge": 8.5,
    "code": 8.5,
    "preference": 8.5,
}
FULL_MIN_EXAMPLES = 20_000  # below this an adapter learns the same for far less memory
FULL_TASKS = {"domain_knowledge", "code", "chat", "summarization"}
LORA_WEIGHT_SHARE = 0.5  # bf16 base above half the GPU leaves too little for activations
PROMPTING_MAX = 200  # below this, few-shot prompting usually does as well
SIMPLE_PROMPTING_MAX = 500  # narrow tasks: few-shot often matches a small fine-tune
SIMPLE_TASKS = {"classification", "extraction", "style"}
DEADLINE_H = {"cpu": 4.0, "gpu": 24.0}
LATENCY_MAX_B = [(100, 1.6), (300, 3.5), (1000, 8.5)]  # p50 ms -> largest model


def size(params: int) -> str:
    return f"{params / 1e9:.1f}B" if params >= 1e9 else f"{params / 1e6:.0f}M"


def where(hw: Hardware) -> str:
    if not hw.gpus:
        return f"{hw.cpu_cores}-core CPU with {hw.ram_available_gb:g} GB RAM available"
    g = hw.gpus[0]
    n = f"{len(hw.gpus)}x " if len(hw.gpus) > 1 else ""
    nodes = f", {hw.nodes} nodes of {len(hw.gpus) // hw.nodes}" if hw.nodes > 1 else ""
    return f"{n}{g.name} ({g.memory_gb:g} GB{nodes})"


def prompting_first(task: str, data: DataFacts, c: Constraints) -> tuple[bool, str]:
    n = data.n_examples
    if c.prompting_first is False:
        return False, "Prompting-first check skipped at your request."
    if task in ("preference", "distillation"):
        return False, ""
    if n < PROMPTING_MAX:
        return True, (
            f"Only {n:,} examples (< {PROMPTING_MAX}): few-shot prompting the base model may "
            "be enough; try the prompt below before training."
        )
    simple = task in SIMPLE_TASKS and (task != "classification" or data.n_labels <= 20)
    if simple and n < SIMPLE_PROMPTING_MAX:
        labels = f", {data.n_labels} labels" if data.n_labels else ""
        return True, (
            f"{n:,} examples for a narrow {task} task{labels}: a few-shot prompt often "
            "matches a small fine-tune; measure it first (prompt below), train if it falls short."
        )
    return False, ""


def _weights_gb(card: ModelCard, precision: str) -> float:
    return card.params * WEIGHT_BYTES["bf16" if precision != "fp32" else "fp32"] / GB


def effective_batch(n_train: int) -> int:
    """Rows per optimizer step: small sets keep more steps per epoch."""
    return 8 if n_train < 1000 else 16 if n_train < 10_000 else 32


def run_settings(card: ModelCard, hw: Hardware, adapter: str, objective: str, task: str,
                 n_train: int, seq: int, n_labels: int = 0) -> RunSettings:
    """The settings the run's config will carry (LoRA shape from `lora_shape`, max_length,
    the dtype; padding-free rows and shared prefixes as the config's defaults), for the
    one estimate the pre-flight repeats. The config says bf16 or not (`config_from_plan`)
    and the trainer has no fp16 path, so a GPU without bf16 trains, and is sized, in fp32."""
    r, targets = lora_shape(task, n_train, card.architecture, n_labels)
    dtype = train_precision(precision_for(hw) == "bf16", False)
    return RunSettings(method=adapter, objective=objective, precision=dtype,
                       max_length=seq, lora_r=r, lora_targets=tuple(targets))


def choose_adapter(
    card: ModelCard,
    hw: Hardware,
    seq: int,
    task: str,
    n: int,
    objective: str,
    fixed: str | None,
    tokens: TokenFacts,
    n_train: int,
    n_labels: int = 0,
) -> tuple[Fit, str]:
    """How the weights are trained (lora | qlora | full) and why; `tokens`: the training
    rows' token facts the memory estimate sizes micro-batches by."""

    def fit(adapter: str) -> Fit:
        settings = run_settings(card, hw, adapter, objective, task, n_train, seq, n_labels)
        # A micro-batch never holds more rows than an optimizer step (the shared-prefix
        # rung offers 16; small sets keep their 8 rows a step, and their number of steps).
        return try_fit(card.shape, settings, hw, tokens,
                       reference_copy=objective == "dpo" and adapter == "full",
                       max_batch=effective_batch(n_train))

    at = where(hw)
    if fixed in ("lora", "qlora", "full"):
        f = fit(fixed)
        return f, (f"{fixed.upper()} as you chose; it needs about {f.memory_gb} GB per device "
                   f"on {at}.")
    usable = usable_gb(hw)
    if n >= FULL_MIN_EXAMPLES and task in FULL_TASKS and hw.gpus:
        f = fit("full")
        if f.fits:
            shard = f" sharded with FSDP over {f.n_devices} GPUs" if f.strategy == "fsdp" else ""
            return f, (
                f"{n:,} examples of {task.replace('_', ' ')}: enough data to update every "
                f"weight of the {size(card.params)} model; full fine-tuning fits at "
                f"{f.memory_gb} GB per GPU{shard} on {at}."
            )
    precision = precision_for(hw)
    lora = fit("lora")
    base_gb = _weights_gb(card, precision)
    share = base_gb / usable if usable else 1.0
    if lora.fits and share <= LORA_WEIGHT_SHARE:
        return lora, (
            f"LoRA: {n:,} examples; the {size(card.params)} base in {precision} takes "
            f"{base_gb:.1f} GB, "
            f"{share:.0%} of the {usable:g} GB usable on {at}; the run needs about "
            f"{lora.memory_gb} GB, the base stays frozen and the adapter is small."
        )
    if not hw.gpus:  # bitsandbytes 4-bit runs on CPUs, but far too slowly to train on
        return lora.model_copy(update={"fits": False}), (
            f"Does not fit well: {n:,} examples, {size(card.params)} model on {at}: LoRA "
            f"needs about {lora.memory_gb} GB and the base alone takes {share:.0%} of usable "
            "memory; QLoRA is not planned without a GPU (4-bit kernels on CPUs are too slow "
            "to train)."
        )
    qlora = fit("qlora")
    if qlora.fits:
        why = (
            f"LoRA would need {lora.memory_gb} GB" if not lora.fits
            else f"its {precision} base alone would take {share:.0%} of the {usable:g} GB usable"
        )
        return qlora, (
            f"QLoRA: {n:,} examples, {size(card.params)} model on {at}; {why}, leaving too "
            "little room for "
            f"longer sequences. A 4-bit NF4 base needs about {qlora.memory_gb} GB, with quality "
            "close to LoRA."
        )
    return qlora, (
        f"Does not fit: even QLoRA on the {size(card.params)} model needs {qlora.memory_gb} GB, "
        f"more than the {usable:g} GB usable on {at}."
    )


def model_limits(task: str, c: Constraints, kind: str = "chat") -> tuple[float, list[str]]:
    """Largest model (billions) the task, latency and user allow, with the reasons."""
    cap = TASK_MAX_B.get(task, 8.5)
    why = [f"{task.replace('_', ' ')} rarely gains beyond ~{cap:g}B parameters"]
    if kind == "multiple_choice":  # the answer format is easy; knowing the answer is not
        cap = TASK_MAX_B["domain_knowledge"]
        why = [f"multiple-choice answers are bounded by what the model knows, so up to "
               f"~{cap:g}B"]
    if c.latency_ms is not None:
        lat = next((b for ms, b in LATENCY_MAX_B if c.latency_ms < ms), None)
        if lat is not None and lat < cap:
            cap = lat
            why.append(f"a {c.latency_ms:g} ms p50 latency target allows ~{lat:g}B at most")
    if c.max_params_b is not None and c.max_params_b < cap:
        cap = c.max_params_b
        why.append(f"you asked for at most {c.max_params_b:g}B")
    return cap, why


def deadline_h(c: Constraints, hw: Hardware) -> float:
    return c.deadline_hours or DEADLINE_H["gpu" if hw.gpus else "cpu"]


def rank_key(card: ModelCard, task: str) -> tuple:
    """Prefer the task's specialist, then a permissive licence, then the larger model."""
    return (card.specialty == task, card.licence_kind == "permissive", card.params)


# --- hyperparameters --------------------------------------------------------------------


def epochs_for(n_train: int, n_labels: int = 0) -> float:
    """Guidance: small sets need more passes, large ones overfit with more than one. A
    label set with few examples per label (BANKING77's slice: 16 per intent over 77)
    needs three passes whatever the row count (one epoch scored 35% there); shared-prefix
    batches make the extra passes cheap."""
    if n_labels and n_train / n_labels < FEW_PER_LABEL:
        return 3.0
    return 3.0 if n_train < 500 else 2.0 if n_train < 5000 else 1.0


FEW_PER_LABEL = 50


def learning_rate_for(adapter: str, objective: str, params: int) -> float:
    if objective == "dpo":
        return 5e-7 if adapter == "full" else 5e-6
    if adapter == "full":
        return 5e-5 if params < 1e9 else 2e-5 if params < 3e10 else 1e-5
    return 1e-3 if params < 5e8 else 2e-4  # tiny models take (and need) a higher rate


# A classifier's adapters go on every linear layer, the MLP included: on BANKING77 (77
# intents, 18 training rows each, SmolLM2-135M, r16, 3 epochs) attention-only LoRA scored
# 0.61 held-out accuracy and all linear layers 0.74 at the same steps; on the 10-intent demo
# (r8, 75 steps) 0.84 and 0.88. The MLP adapters cost little next to the shared prompt.


def lora_shape(task: str, n: int, architecture: str, n_labels: int = 0) -> tuple[int, list[str]]:
    """Rank and target modules: more capacity for knowledge-heavy tasks with much data,
    and the MLP too for classifiers."""
    heavy = task in ("domain_knowledge", "code", "chat", "summarization", "distillation")
    r = 8 if n < 500 else 16
    if heavy and n >= 5000:
        r = 32 if n < 20_000 else 64
    scope = ("all_linear" if (heavy and n >= 1000) or task == "classification" or n_labels
             else "attention")
    return r, lora_targets(architecture, scope) or ["q_proj", "k_proj", "v_proj", "o_proj"]


def training_for(
    card: ModelCard, fit: Fit, objective: str, task: str, n_train: int, seq: int,
    n_labels: int = 0,
) -> Training:
    effective = effective_batch(n_train)
    batch = min(fit.batch_size, effective)  # try_fit already kept it within a step
    per_step = batch * fit.n_devices
    r, targets = lora_shape(task, n_train, card.architecture, n_labels)
    adapter = fit.adapter != "full"
    return Training(
        epochs=epochs_for(n_train, n_labels) if objective == "sft" else 1.0,
        learning_rate=learning_rate_for(fit.adapter, objective, card.params),
        batch_size=batch,
        grad_accum=max(1, effective // per_step),
        max_length=seq,
        gradient_checkpointing=fit.gradient_checkpointing,
        lora_r=r if adapter else None,
        lora_alpha=2 * r if adapter else None,
        target_modules=targets if adapter else None,
        dpo_beta=0.1 if objective == "dpo" else None,
    )


# --- targets ------------------------------------------------------------------------------

# What the tester computes today for each task (ROUGE, F1, JSON validity come with it).
METRICS = {
    "classification": ["accuracy (label parsed from the answer)", "held-out answer loss",
                       "perplexity"],
    "extraction": ["JSON validity and field match against the references",
                   "held-out answer loss", "perplexity"],
    "preference": ["preference accuracy (chosen answer more likely than rejected) on held-out "
                   "pairs", "DPO implicit reward accuracy and margin against the base"],
}
GAINS = {"classification": 0.10, "extraction": 0.05, "preference": 0.05}
TEXT_GAIN = 0.02  # free text: the reference overlap must rise by at least this much
PRIMARY = {"classification": "accuracy", "preference": "preference_accuracy",
           "extraction": "json_match", "code": "chrf"}
# Absolute floors on the tuned model (defaults; Constraints.min_score moves the primary's).
# classification: the guidance's "good" starts above 0.90, and 0.85 is the least a router
# can ship with; extraction: nearly all answers must parse, most fields must match; free
# text with references: ROUGE-L 0.30 is where answers start to share the references'
# content (chrF 40 for code). Preference pairs are judged relative to the base only.
FLOORS: dict[str, dict[str, float]] = {
    "classification": {"accuracy": 0.85},
    "extraction": {"json_valid": 0.90, "json_match": 0.60},
    "code": {"chrf": 40.0},
    "preference": {},
}
TEXT_FLOORS = {"rouge_l": 0.30}


# The safety mix's default share of the training rows, for chat and generation data,
# measured with `python -m evals.safety` on self_instruct (139 training rows, SmolLM2-135M,
# LoRA, 3 epochs): at 0.25 the tuned model refused 6% of the probe's harmful requests, at
# 0.5 (half refusals) 76% but 22% of the benign look-alikes; 0.6 with 2 refusals in 5 rows
# is the least measured share that meets both limits of the safety gate.
SAFETY_MIX = 0.6
NO_MIX_TASKS = {"classification", "extraction"}  # labels and JSON: a prose refusal breaks them


def safety_mix_for(task: str, data_kind: str, c: Constraints) -> tuple[float, str]:
    """(share, why): how many safety rows the data step mixes in, and the plan's reason."""
    if data_kind != "chat" or task in NO_MIX_TASKS:
        return 0.0, ""
    share = SAFETY_MIX if c.safety_mix is None else c.safety_mix
    if share <= 0:
        return 0.0, ("Safety mix: off, as asked; the safety gate still probes the tuned "
                     "model.")
    return share, (f"Safety mix: {share:.0%} more training rows of refused harmful requests "
                   "and helpfully answered look-alikes, because a chat fine-tune on task data "
                   "alone learns to comply with anything (turn off with safety_mix=0).")


def targets_for(task: str, c: Constraints) -> tuple[Targets, list[str]]:
    metric = PRIMARY.get(task, "rouge_l")
    gain = c.min_gain if c.min_gain is not None else GAINS.get(task, TEXT_GAIN)
    floors = dict(FLOORS.get(task, TEXT_FLOORS))
    if c.min_score is not None:
        floors[metric] = c.min_score
    metrics = METRICS.get(task, ["ROUGE-L, chrF and BLEU against the references",
                                 "held-out answer loss", "perplexity"]) + [
        "safety: refusal of harmful requests (AdvBench) and of benign look-alikes (XSTest)",
    ]
    # DPO lowers the likelihood of both answers; a higher loss on chosen answers is expected.
    limits = SafetyLimits(**{k: v for k, v in (("min_refusal", c.min_refusal),
                                               ("max_over_refusal", c.max_over_refusal))
                             if v is not None})
    return Targets(primary_metric=metric, min_gain=gain, floors=floors,
                   loss_must_drop=task != "preference", safety=limits), metrics


# --- feedback from rejected plans -----------------------------------------------------------

METHOD_WORDS = [("qlora", "qlora"), ("4-bit", "qlora"), ("4bit", "qlora"), ("full", "full"),
                ("dpo", "dpo"), ("lora", "lora")]
SMALLER = ("smaller", "cheaper", "faster", "too slow", "too expensive", "less memory", "too big")
LARGER = ("bigger", "larger", "more capable", "better quality", "stronger", "too small")


def apply_feedback(
    c: Constraints,
    feedback: list[str | dict],
    previous_params_b: float | None,
    known: list[ModelCard],
) -> tuple[Constraints, list[str]]:
    """Turn rejected plans' reasons and edited choices, in order, into constraints (a later
    decision wins); say what was understood."""
    c = c.model_copy()
    applied: list[str] = []
    for reason in feedback:
        if isinstance(reason, dict):
            c = Constraints.model_validate(c.model_dump() | reason)
            applied += [f"{k} {v} (you set it)" for k, v in reason.items()]
            continue
        text = reason.lower()
        for word, method in METHOD_WORDS:
            if re.search(rf"(?<![a-z]){re.escape(word)}(?![a-z])", text):
                c.method = method
                applied.append(f"method {method} (from: \"{reason}\")")
                break
        named = [m for m in known if m.id.lower() in text or m.id.split("/")[-1].lower() in text]
        if named:
            c.model = named[0].id
            applied.append(f"model {named[0].id} (from: \"{reason}\")")
        if previous_params_b and any(w in text for w in SMALLER):
            c.max_params_b = round(previous_params_b * 0.6, 2)
            applied.append(f"a model under {c.max_params_b:g}B (from: \"{reason}\")")
        if previous_params_b and any(w in text for w in LARGER):
            c.min_params_b = round(previous_params_b * 1.5, 2)
            applied.append(f"a model over {c.min_params_b:g}B (from: \"{reason}\")")
        if "permissive" in text or "apache" in text or "commercial" in text:
            c.licence = "permissive"
            applied.append(f"permissive licences only (from: \"{reason}\")")
        if re.search(r"(no|skip|without|don't|do not)\s+(few-shot\s+)?prompt", text):
            c.prompting_first = False
            applied.append(f"no prompting-first advice (from: \"{reason}\")")
        if m := re.search(r"\$\s?([\d,.]+)", text):
            c.budget_usd = float(m.group(1).replace(",", ""))
            applied.append(f"budget ${c.budget_usd:g} (from: \"{reason}\")")
    return c, applied
