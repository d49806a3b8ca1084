"""Where the workflow goes after each gate and after the tester. Pure functions."""

from __future__ import annotations

STOP = "stop_rejected"


def _action(state: dict, gate: str) -> str:
    return state["decisions"][gate]["action"]


def after_gate(gate: str, next_node: str):
    """approve/edit go on; reject stops the run."""

    def route(state: dict) -> str:
        return STOP if _action(state, gate) == "reject" else next_node

    route.__name__ = f"after_{gate}"
    return route


MAX_REPLANS = 3
STOP_WORDS = ("stop", "cancel", "abort", "quit")


def after_strategy(state: dict) -> str:
    """Reject re-plans with the reason (up to MAX_REPLANS; "stop" ends the run); an edit
    of plan choices re-plans too, so the person sees the plan they will get."""
    from ftagent.agent.graph.gates import plan_keys

    decision = state["decisions"]["strategy"]
    if decision["action"] == "reject":
        rejects = sum(
            1 for r in state.get("history") or []
            if r.get("gate") == "strategy" and r.get("action") == "reject"
        )
        words = decision.get("reason", "").lower().split()
        if rejects > MAX_REPLANS or any(w.strip(".,!:;") in STOP_WORDS for w in words):
            return STOP
        return "planner"
    if decision["action"] == "edit" and plan_keys() & set(decision.get("changes") or {}):
        return "planner"
    return "data_prep"


def after_tester(state: dict) -> str:
    """Missed targets loop back to config while attempts remain and the diagnosis proposes
    config changes (the same config would train the same model); else a person decides,
    e.g. on a diagnosis that needs new data."""
    v = state["verdict"]
    if (not v["targets_met"] and v.get("proposed_changes")
            and state["attempt"] < state["max_attempts"]):
        return "config"
    return "gate_evaluation"


def after_evaluation(state: dict) -> str:
    decision = state["decisions"]["evaluation"]
    if decision["action"] == "edit" and {"data_path", "augment"} & set(decision["changes"] or {}):
        return "data_prep"  # new data: prepare and check it, then train again
    if decision["action"] == "edit" and decision["changes"]:
        return "config"  # the person asked for a retrain with changes
    if decision["action"] == "reject":
        words = decision.get("reason", "").lower().split()
        if any(w.strip(".,!:;") in STOP_WORDS for w in words):
            return STOP
        return "config" if state["attempt"] < state["max_attempts"] else STOP
    return "gate_safety"
