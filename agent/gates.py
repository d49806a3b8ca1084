"""One mechanism for all six quality gates: a typed request, a typed decision.

A gate is its own graph node that only calls `interrupt()`, so re-running the node on
resume has no side effects.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field

GATES: dict[str, str] = {
    "strategy": "Strategy approved",
    "dataset": "Dataset quality verified",
    "training": "Training completed",
    "evaluation": "Evaluation targets met",
    "safety": "No harmful behaviours",
    "deployment": "Deployment successful",
}


class GateRequest(BaseModel):
    gate: str
    title: str
    question: str
    passed: bool = Field(description="did the automatic check behind this gate pass")
    summary: str = Field(description="one paragraph of evidence for a person")
    evidence: dict[str, Any] = Field(default_factory=dict)
    allowed: list[str] = Field(default_factory=lambda: ["approve", "reject", "edit"])


class GateDecision(BaseModel):
    action: Literal["approve", "reject", "edit"]
    reason: str = ""
    changes: dict[str, Any] = Field(
        default_factory=dict, description="config overrides, e.g. {'learning_rate': 5e-4}"
    )


def gate_node(gate: str, build: Callable[[dict], GateRequest]):
    """A graph node that pauses for a decision on `gate` and records it."""
    from langgraph.types import interrupt

    def node(state: dict) -> dict:
        request = build(state)
        raw = interrupt(request.model_dump())
        decision = GateDecision.model_validate(raw)
        record = {"gate": gate, "passed": request.passed, **decision.model_dump()}
        update: dict[str, Any] = {"decisions": {gate: record}, "history": [record]}
        if decision.changes:
            update["overrides"] = decision.changes
        return update

    node.__name__ = f"gate_{gate}"
    return node
