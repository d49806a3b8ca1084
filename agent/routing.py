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


def after_tester(state: dict) -> str:
    """Missed targets loop back to config while attempts remain; else a person decides."""
    if not state["verdict"]["targets_met"] and state["attempt"] < state["max_attempts"]:
        return "config"
    return "gate_evaluation"


def after_evaluation(state: dict) -> str:
    decision = state["decisions"]["evaluation"]
    if decision["action"] == "edit" and decision["changes"]:
        return "config"  # the person asked for a retrain with changes
    if decision["action"] == "reject":
        return "config" if state["attempt"] < state["max_attempts"] else STOP
    return "gate_safety"
