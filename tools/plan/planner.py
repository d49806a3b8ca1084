"""The planner at the edge: read the data, probe the hardware, resolve the model, and
hand plain values to the rules in `tools.plan.rules`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ftagent.tools.data.facts import DataFacts, facts_from_examples
from ftagent.tools.hardware import Hardware, probe
from ftagent.tools.plan.rules import make_plan
from ftagent.tools.plan.types import Constraints, Plan, PlanInputs
from ftagent.tools.registry import card_from_folder, known_models

SAMPLE = 5000  # token lengths from a spread sample: percentiles settle long before this


@dataclass
class Planned:
    plan: Plan
    hardware: Hardware
    model_path: Path | None  # None: the chosen model is not on this machine
    params: int
    max_context: int


def data_facts(spec, tokenizer=None) -> DataFacts:
    """Size, shape and token lengths of a dataset, as the planner needs them."""
    from ftagent.tools.data.prepare import add_label_prompt, read_and_convert, task_of
    from ftagent.tools.data.rows import PrepareOptions

    a = read_and_convert(spec, PrepareOptions(near_dup_threshold=None))
    task, labels = task_of(a)
    if labels and a.info["schema"].kind != "preference":
        add_label_prompt(a, labels)
    examples = [i.example for i in a.kept]
    step = max(1, len(examples) // SAMPLE)
    sample = examples[::step]

    def count(text: str) -> int:
        return len(tokenizer(text, add_special_tokens=False)["input_ids"])

    facts = facts_from_examples(
        sample, a.info["schema"].kind, a.info["schema"].name, labels,
        count if tokenizer is not None else None,
    )
    tokens = None
    if tokenizer is not None and getattr(tokenizer, "chat_template", None):
        from ftagent.tools.data.tokens import token_facts

        tokens = token_facts(tokenizer, examples)  # as the trainer's pre-flight measures
    return facts.model_copy(update={"n_examples": len(examples), "tokens": tokens})


def with_scale_out(plan: Plan, inputs: PlanInputs, config: str = "CONFIG") -> Plan:
    """The plan with a cluster recommended, when this machine will not do."""
    import shutil

    from ftagent.tools.plan.scale_out import recommend, scale_out_item

    s = recommend(inputs, plan, slurm_here=shutil.which("sbatch") is not None, config=config)
    if s is None:
        return plan
    return plan.model_copy(update={
        "scale_out": s, "hardware_requirements": [*plan.hardware_requirements,
                                                  scale_out_item(s)]})


def local_model_ids() -> list[str]:
    """Registry models that resolve on this machine without a download."""
    from ftagent.tools.models import ModelNotFoundError, resolve_model

    found = []
    for card in known_models():
        try:
            resolve_model(card.local or card.id)
        except ModelNotFoundError:
            continue
        found.append(card.id)
    return found


def plan_for(
    goal: str,
    data_path: str | Path,
    model: str | None = None,
    where: str | Path = ".",
    constraints: Constraints | None = None,
    feedback: list[str | dict] | None = None,
    previous_model: str | None = None,
    require_local: bool = False,
    hardware: Hardware | None = None,
    config: str = "CONFIG",
) -> Planned:
    """Plan for the data at `data_path`. With `model` the base is fixed; without it the
    registry is searched (only models on this machine when `require_local`). `hardware`:
    plan for it (tools.gpus.described) instead of this machine; otherwise, for work too big
    for this machine, the plan recommends a cluster, whose launch commands name `config`."""
    from ftagent.tools.models import DEFAULT_MODEL, resolve_model
    from ftagent.tools.registry import lookup
    from transformers import AutoTokenizer

    constraints = constraints or Constraints()
    hw = hardware or probe(where)
    fixed = None
    edited = [f["model"] for f in feedback or [] if isinstance(f, dict) and f.get("model")]
    name = edited[-1] if edited else model or constraints.model
    if name:  # a model a person named must be loadable; a ModelNotFoundError says how
        resolved = resolve_model(name)
        fixed = card_from_folder(resolved.path, resolved.name)
        feedback = [f for f in feedback or [] if not isinstance(f, dict) or "model" not in f]
        feedback += [{"model": fixed.id}] if edited else []
    local = local_model_ids()
    candidates = None
    if fixed is None and require_local:
        candidates = [c for c in known_models() if c.id in local]
    tok_source = resolved.path if fixed else resolve_model(DEFAULT_MODEL).path
    tokenizer = AutoTokenizer.from_pretrained(tok_source)
    facts = data_facts(data_path, tokenizer)
    inputs = PlanInputs(
        goal=goal, data=facts, hardware=hw, constraints=constraints, model=fixed,
        candidates=candidates, local_ids=local, feedback=feedback or [],
        previous_model=previous_model,
    )
    plan = make_plan(inputs)
    if hardware is None:
        plan = with_scale_out(plan, inputs, config)
    path = resolved.path if fixed else None
    if path is None and plan.model in local:
        card = lookup(plan.model)
        path = resolve_model(card.local or card.id).path
    return Planned(
        plan=plan,
        hardware=hw,
        model_path=path,
        params=plan.model_card.params,
        max_context=plan.model_card.context,
    )
