"""What a conversation (chat REPL, TUI) asks of the engine, as plain functions: make a run
with the same checks as `ftagent run`, decide one gate, describe and list runs. The workflow
itself is `agent.session.drive`. No Textual here."""

from __future__ import annotations

from pathlib import Path

from ftagent.agent.graph.gates import GateDecision, GateRequest
from ftagent.agent.service.session import ApprovalPolicy

RESUMABLE = ("interrupted", "waiting", "failed")
MIN_EXAMPLES = 10  # fewer usable examples than this cannot be split and trained


class InputError(ValueError):
    """Bad input from the person: shown as one line, no run folder is made."""


class OneDecision(ApprovalPolicy):
    """Answers the waiting gate once, as the person decided; any later gate (the same one
    again after a re-plan or a retrain, too) waits for the person."""

    gate: str
    decision: GateDecision | None = None

    def decide(self, request: GateRequest) -> GateDecision | None:
        if request.gate == self.gate and self.decision is not None:
            decision, self.decision = self.decision, None
            return decision
        return None


def one_decision(gate: str, action: str, reason: str = "", changes: dict | None = None,
                 source: str = "unrecorded", detail: str = "",
                 proposed_by: str | None = None) -> OneDecision:
    """The person's decision on the waiting gate. Raises DecisionError (naming the key and
    the allowed ones) for an edit the gate does not accept."""
    return OneDecision(gate=gate, decision=GateDecision(
        action=action, reason=reason, changes=changes or {}, gate=gate, source=source,
        detail=detail, proposed_by=proposed_by))


def create_workflow_run(goal: str, data: str | Path, model: str | None, runs_root: Path,
                        max_attempts: int = 2, run_id: str | None = None,
                        constraints: dict | None = None) -> Path:
    """Check the inputs (goal, data that validates with enough usable examples, a model
    that resolves) and make the run folder: `runs_root/<run id>`, or `runs_root` itself
    when `run_id` is given. Bad input raises InputError and makes no folder."""
    from ftagent.agent.service.runs import RunError, create_run, new_run_id
    from ftagent.tools.data import DataError, PrepareOptions, validate_dataset
    from ftagent.tools.models import ModelNotFoundError, resolve_model
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    if not goal.strip():
        raise InputError("the goal must say what the model should do")
    data = Path(data).expanduser()
    try:
        report = validate_dataset(data, PrepareOptions(near_dup_threshold=None))
    except DataError as exc:
        raise InputError(str(exc)) from None
    if report.kept < MIN_EXAMPLES:
        problems = "\n".join(
            f"  {c.name}: {c.count} ({'; '.join(c.examples)})" for c in report.errors)
        raise InputError(
            f"{data}: only {report.kept} usable examples after validation; at least "
            f"{MIN_EXAMPLES} are needed. Problems found:\n{problems}\n"
            f"See everything with: ftagent data validate {data}")
    try:
        resolved = resolve_model(model)
    except ModelNotFoundError as exc:
        raise InputError(str(exc)) from None
    target = Path(runs_root) if run_id else Path(runs_root) / (run_id := new_run_id())
    inputs = {"goal": goal, "data_path": str(data.resolve()),
              "model": resolved.name if model else None,  # None: the planner picks a local one
              "max_attempts": max_attempts}
    if constraints:  # plan choices fixed at the start, e.g. {"safety_mix": 0}
        inputs["constraints"] = constraints
    try:
        return create_run(target, run_id, inputs)
    except RunError as exc:
        raise InputError(str(exc)) from None

