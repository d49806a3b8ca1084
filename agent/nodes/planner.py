"""planner: goal + data + hardware -> plan.md, plan.json and the strategy gate.

A rejected plan comes back here with the person's reason (the rules read it: "too slow",
"use QLoRA", "permissive licence only", ...); an edited plan comes back with its choices
(method, model, targets) fixed."""

from __future__ import annotations

from pathlib import Path

from agent.gates import GATES, GateRequest
from tools.atomic import write_json, write_text
from tools.plan_report import plan_markdown
from tools.plan_types import Constraints
from tools.planner import plan_for

# Edits at the strategy gate that change the plan itself (the rest are config changes).
PLAN_KEYS = set(Constraints.model_fields)
RUNNABLE = {"sft"}  # objectives the trainer runs today


def strategy_feedback(state: dict) -> list[str | dict]:
    """Reasons of rejected plans and plan choices edited, oldest first."""
    out: list[str | dict] = []
    for record in state.get("history") or []:
        if record.get("gate") != "strategy":
            continue
        if record["action"] == "reject" and record.get("reason"):
            out.append(record["reason"])
        if record["action"] == "edit":
            choices = {k: v for k, v in record["changes"].items() if k in PLAN_KEYS}
            if choices:
                out.append(choices)
    return out


def planner(state: dict) -> dict:
    run_dir = Path(state["run_dir"])
    previous = (state.get("plan") or {}).get("model")
    planned = plan_for(
        state["goal"], state["data_path"], state.get("model"), run_dir,
        feedback=strategy_feedback(state), previous_model=previous, require_local=True,
    )
    plan = planned.plan
    write_text(run_dir / "plan.md", plan_markdown(plan))
    write_json(run_dir / "plan.json", plan.model_dump())
    return {
        "hardware": planned.hardware.model_dump(),
        "plan": plan.model_dump()
        | {
            "model_path": str(planned.model_path) if planned.model_path else None,
            "params": planned.params,
            "max_context": planned.max_context,
        },
        "history": [{"node": "planner", "method": plan.method, "model": plan.model,
                     "task_type": plan.task_type, "feedback_applied": plan.feedback_applied}],
    }


def strategy_request(state: dict) -> GateRequest:
    plan = state["plan"]
    problems = list(plan.get("warnings") or [])
    if not plan.get("model_path"):
        problems.append(f"{plan['model']} is not on this machine: download it, or edit the "
                        "plan with model=<a local folder>.")
    if plan["objective"] not in RUNNABLE or plan["method"] == "distillation":
        problems.append(
            f"ftagent's trainer runs supervised fine-tuning only so far; {plan['method']} is "
            "the right method for this data but cannot be trained here yet."
        )
    summary = " ".join(plan["reasons"] + problems)
    return GateRequest(
        gate="strategy",
        title=GATES["strategy"],
        question=f"Train {plan['model']} with {plan['method'].upper()} for this goal?",
        passed=bool(plan["fits"]) and not problems,
        summary=summary,
        evidence={
            "plan": str(Path(state["run_dir"]) / "plan.md"),
            "method": plan["method"],
            "model": plan["model"],
            "targets": plan["targets"],
            "memory_gb": plan["estimated_memory_gb"],
            "usable_gb": plan["memory_budget_gb"],
            "cost_usd": plan["estimates"]["cost_usd"],
            "prompting_first": plan["prompting_first"],
        },
    )
