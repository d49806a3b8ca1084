"""planner: goal + data + hardware -> plan.md and the strategy gate."""

from __future__ import annotations

from pathlib import Path

from agent.gates import GATES, GateRequest
from tools.atomic import write_text
from tools.data import summarize
from tools.hardware import probe
from tools.models import resolve_model
from tools.plan import make_plan, model_facts, plan_markdown


def planner(state: dict) -> dict:
    run_dir = Path(state["run_dir"])
    model = resolve_model(state.get("model"))
    facts = model_facts(model.path)
    hw = probe(run_dir)
    n, task_type, labels = summarize(state["data_path"])
    plan = make_plan(state["goal"], task_type, n, model.name, facts, hw)
    write_text(run_dir / "plan.md", plan_markdown(plan))
    return {
        "hardware": hw.model_dump(),
        "plan": plan.model_dump() | {"model_path": str(model.path), "params": facts.params},
        "history": [{"node": "planner", "method": plan.method, "task_type": task_type}],
    }


def strategy_request(state: dict) -> GateRequest:
    plan = state["plan"]
    return GateRequest(
        gate="strategy",
        title=GATES["strategy"],
        question=f"Train {plan['model']} with {plan['method'].upper()} for this goal?",
        passed=plan["estimated_memory_gb"] <= plan["memory_budget_gb"],
        summary=" ".join(plan["reasons"] + plan.get("notes", [])),
        evidence={
            "plan": str(Path(state["run_dir"]) / "plan.md"),
            "method": plan["method"],
            "model": plan["model"],
            "targets": plan["targets"],
        },
    )
