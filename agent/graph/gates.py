"""One mechanism for all six quality gates: a typed request, a typed decision.

A gate is its own graph node that only calls `interrupt()`, so re-running the node on
resume has no side effects.

Decisions belong to people. A `GateDecision` says where it came from (the terminal app,
the command line, a policy file the person wrote, or the person's own words in the chat)
and its `changes` are checked here, once, for every path: against the config schema and
the keys the gate accepts. An LLM never makes one; it can only propose (see
agent.chat.tools.propose_decision).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, Field, ValidationError

GATES: dict[str, str] = {
    "strategy": "Strategy approved",
    "dataset": "Dataset quality verified",
    "training": "Training completed",
    "evaluation": "Evaluation targets met",
    "safety": "No harmful behaviours",
    "deployment": "Deployment successful",
}

# What an edit at each gate may change. "plan": the planner's choices (Constraints; the
# plan is made again with them fixed); "config": training config fields (dotted for nested
# ones, e.g. lora.r), applied when the config is next written; "data_path": new data,
# prepared and trained on again; "augment": the teacher writes more examples for the
# labels that fall short (true, or examples per label), then the data is prepared again.
# Safety and deployment take approve or reject only: there is nothing at those gates that
# an edit would retrain.
GATE_EDITS: dict[str, tuple[str, ...]] = {
    "strategy": ("plan", "config"),
    "dataset": ("config",),
    "training": ("config",),
    "evaluation": ("config", "data_path", "augment"),
    "safety": (),
    "deployment": (),
}

Source = Literal["tui", "cli", "policy", "chat", "unrecorded"]


class DecisionError(Exception):
    """A decision that cannot be taken: names the gate, the key and what is allowed. Not a
    ValueError, so pydantic passes it through as it is instead of wrapping it."""


class GateRequest(BaseModel):
    gate: str
    title: str
    question: str
    passed: bool = Field(description="did the automatic check behind this gate pass")
    summary: str = Field(description="one paragraph of evidence for a person")
    evidence: dict[str, Any] = Field(default_factory=dict)
    allowed: list[str] = Field(default_factory=lambda: ["approve", "reject", "edit"])


def plan_keys() -> set[str]:
    """Edit keys that change the plan itself (the planner's Constraints: method, model,
    targets, ...); every other edit key is a config change. The one list of them."""
    from ftagent.tools.plan.types import Constraints

    return set(Constraints.model_fields)


# Config fields the workflow writes itself (where the data and outputs live).
WORKFLOW_OWNED = ("train_file", "val_file", "output_dir")


def config_keys() -> list[str]:
    """Every editable training-config key, nested ones dotted (lora.r, ...)."""
    from ftagent.tools.config.train_config import TrainConfig

    keys = []
    for name, field in TrainConfig.model_fields.items():
        if name in WORKFLOW_OWNED:
            continue
        sub = getattr(field.annotation, "model_fields", None)
        keys += [f"{name}.{s}" for s in sub] if sub else [name]
    return keys


def allowed_keys(gate: str) -> list[str]:
    kinds = GATE_EDITS.get(gate, ())
    keys: list[str] = []
    if "plan" in kinds:
        keys += sorted(plan_keys())
    if "config" in kinds:
        keys += [k for k in config_keys() if k not in keys]
    if "data_path" in kinds:
        keys.append("data_path")
    if "augment" in kinds:  # true, or examples per label: the teacher writes more
        keys.append("augment")
    return keys


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'value'}: {e['msg']}"
                     for e in exc.errors())


def check_changes(gate: str, changes: dict[str, Any]) -> dict[str, Any]:
    """The changes if the gate accepts every key and each value fits its schema; else
    DecisionError naming the key and the allowed ones."""
    from ftagent.tools.config.train_config import TrainConfig, apply_overrides
    from ftagent.tools.plan.types import Constraints

    if gate not in GATES:
        raise DecisionError(f"unknown gate '{gate}'; gates are: {', '.join(GATES)}")
    if not changes:
        return changes
    kinds = GATE_EDITS[gate]
    if not kinds:
        raise DecisionError(
            f"the {gate} gate takes approve or reject only; it has nothing to edit "
            f"(got {', '.join(changes)})")
    allowed = allowed_keys(gate)
    unknown = [k for k in changes if k not in allowed]
    if unknown:
        raise DecisionError(
            f"the {gate} gate cannot change {', '.join(repr(k) for k in unknown)}; "
            f"it accepts: {', '.join(allowed)}")
    plan = {k: v for k, v in changes.items() if k in plan_keys()}
    config = {k: v for k, v in changes.items()
              if k not in plan and k not in ("data_path", "augment")}
    try:
        Constraints.model_validate(plan)
        # Config values are checked on a placeholder config: types, ranges, known keys.
        apply_overrides(TrainConfig(model="m", train_file="t.jsonl", output_dir="out"), config)
    except ValidationError as exc:
        raise DecisionError(f"{gate} gate edit: {_problems(exc)}") from None
    except ValueError as exc:
        raise DecisionError(f"{gate} gate edit: {exc}") from None
    if "data_path" in changes and not str(changes["data_path"]).strip():
        raise DecisionError(f"{gate} gate edit: data_path is empty")
    augment = changes.get("augment")
    if "augment" in changes and not (augment is True or (
            isinstance(augment, int) and not isinstance(augment, bool) and augment > 0)):
        raise DecisionError(f"{gate} gate edit: augment is true or a number of examples per "
                            f"label, got {augment!r}")
    return changes


class GateDecision(BaseModel):
    action: Literal["approve", "reject", "edit"]
    reason: str = ""
    changes: dict[str, Any] = Field(
        default_factory=dict, description="config overrides, e.g. {'learning_rate': 5e-4}"
    )
    gate: str | None = Field(None, description="the gate it answers; its edits are checked")
    source: Source = Field("unrecorded", description="who decided: tui, cli, policy, chat")
    detail: str = Field("", description="policy file and rule, the person's words, the flags")
    proposed_by: str | None = Field(None, description="an LLM's proposal the person confirmed")

    def model_post_init(self, context: Any) -> None:
        # Here rather than in a validator, so callers get the DecisionError itself (a
        # one-line message naming the key and the allowed ones), not a wrapped one.
        if self.action == "edit" and not self.changes:
            raise DecisionError("an edit needs at least one change (KEY=VALUE)")
        if self.gate is not None:
            check_changes(self.gate, self.changes)


def gate_node(gate: str, build: Callable[[dict], GateRequest]):
    """A graph node that pauses for a decision on `gate` and records it."""
    from langgraph.types import interrupt

    def node(state: dict) -> dict:
        request = build(state)
        raw = interrupt(request.model_dump())
        decision = GateDecision.model_validate({**raw, "gate": gate})
        record = {"passed": request.passed, **decision.model_dump()}
        update: dict[str, Any] = {"decisions": {gate: record}, "history": [record]}
        if decision.changes:
            update["overrides"] = decision.changes
        return update

    node.__name__ = f"gate_{gate}"
    return node
