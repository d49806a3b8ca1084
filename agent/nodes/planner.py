"""planner: goal + data + hardware -> plan.md and the strategy gate."""

from __future__ import annotations

from pathlib import Path

from agent.gates import GATES, GateRequest
from tools.atomic import write_json, write_text
from tools.plan import plan_markdown
from tools.planner import plan_for


def planner(state: dict) -> dict:
    run_dir = Path(state["run_dir"])
    planned = plan_for(state["goal"], state["data_path"], state.get("model"), run_dir)
    plan = planned.plan
    write_text(run_dir / "plan.md", plan_markdown(plan))
    write_json(run_dir / "plan.json", plan.model_dump())
    return {
        "hardware": planned.hardware.model_dump(),
        "plan": plan.model_dump()
        | {
            "model_path": str(planned.model_path),
            "params": planned.params,
            "max_context": planned.max_context,
        },
        "history": [{"node": "planner", "method": plan.method, "task_type": plan.task_type}],
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
