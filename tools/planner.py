"""The planner at the edge: resolve the model, probe the hardware, look at the data, and
hand the plain values to the rules in `tools.plan`."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from tools.data import summarize
from tools.hardware import Hardware, probe
from tools.models import resolve_model
from tools.plan import Plan, make_plan, model_facts


@dataclass
class Planned:
    plan: Plan
    hardware: Hardware
    model_path: Path
    params: int
    max_context: int


def plan_for(
    goal: str, data_path: str | Path, model: str | None = None, where: str | Path = "."
) -> Planned:
    resolved = resolve_model(model)
    facts = model_facts(resolved.path)
    hw = probe(where)
    n, task_type, _labels = summarize(data_path)
    plan = make_plan(goal, task_type, n, resolved.name, facts, hw)
    return Planned(
        plan=plan,
        hardware=hw,
        model_path=resolved.path,
        params=facts.params,
        max_context=facts.max_context,
    )
