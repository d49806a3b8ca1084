"""Drive a run: stream the graph, log every event, decide gates by policy or stop.

The same driver serves headless runs and (later) the TUI; it owns no workflow logic.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Callable
from pathlib import Path

from ftagent.agent.graph.gates import GATES, DecisionError, GateDecision, GateRequest, check_changes
from ftagent.agent.graph.stop import STOP_REQUESTED
from ftagent.agent.service.outcome import Outcome
from ftagent.agent.service.runs import STATE_DB, append_event, read_manifest, update_manifest
from pydantic import BaseModel, Field

EventSink = Callable[[dict], None]


class ApprovalPolicy(BaseModel):
    """How gates are decided without a person at the keyboard.

    `approve_all` approves every gate whose automatic check passed; a gate named in
    `approve` is approved even when its check failed (a person looked and said so).
    """

    approve_all: bool = False
    approve: set[str] = Field(default_factory=set)
    reject: dict[str, str] = Field(default_factory=dict)
    edits: dict[str, dict] = Field(default_factory=dict)

    @classmethod
    def from_flags(
        cls,
        approve: str | None = None,
        reject: str | None = None,
        reason: str = "",
        edits: dict | None = None,
    ) -> ApprovalPolicy:
        """The command line's --approve/--reject/--edit. A bad gate name or an edit the
        gate does not accept raises DecisionError before anything runs."""
        names = {g.strip() for g in (approve or "").split(",") if g.strip()}
        policy = cls(approve_all="all" in names, approve=names - {"all", "none"})
        if reject:
            policy.reject[reject] = reason or "rejected from the command line"
        for gate, changes in (edits or {}).items():
            policy.edits[gate] = changes
        unknown = (policy.approve | set(policy.reject) | set(policy.edits)) - set(GATES)
        if unknown:
            raise DecisionError(
                f"unknown gate(s): {', '.join(sorted(unknown))}; "
                f"gates are: {', '.join(GATES)}, or 'all'"
            )
        for gate, changes in policy.edits.items():
            check_changes(gate, changes)
        return policy

    def decide(self, request: GateRequest) -> GateDecision | None:
        """A reject or edit answers the gate once: when the workflow comes back to the same
        gate (a re-plan, a retrain) it waits for a new decision instead of looping."""
        gate = request.gate
        if gate in self.reject:
            return GateDecision(action="reject", reason=self.reject.pop(gate), gate=gate,
                                source="cli", detail=f"--reject {gate}")
        if gate in self.edits:
            changes = self.edits.pop(gate)
            return GateDecision(
                action="edit", changes=changes, gate=gate, source="cli",
                reason="edited from the command line",
                detail="--edit " + " ".join(f"{k}={v}" for k, v in changes.items()),
            )
        if gate in self.approve:
            return GateDecision(action="approve", gate=gate, source="cli",
                                detail=f"--approve {gate}")
        if self.approve_all and request.passed:
            return GateDecision(action="approve", gate=gate, source="cli",
                                detail="--approve all (the automatic check passed)")
        return None

    @property
    def unmet(self) -> str:
        """Why the last gate was left for a person (policy files say which rule)."""
        return ""


def _summary(update) -> dict:
    if not isinstance(update, dict):
        return {}
    hist = update.get("history") or []
    return hist[-1] if hist else {}


def drive(
    run_dir: Path,
    policy: ApprovalPolicy,
    initial: dict | None = None,
    on_event: EventSink | None = None,
) -> Outcome:
    """Run or resume the workflow in `run_dir` until it ends or waits at a gate."""
    from ftagent.agent.graph.workflow import NODES, build_graph, open_checkpointer
    from ftagent.tools.quiet import quiet_libraries
    from langgraph.types import Command

    quiet_libraries()
    run_dir = Path(run_dir)
    run_id = read_manifest(run_dir)["run_id"]

    def emit(event: dict) -> None:
        event = append_event(run_dir, event)
        if on_event:
            on_event(event)

    saver = open_checkpointer(run_dir / STATE_DB)
    graph = build_graph(saver)
    config = {"configurable": {"thread_id": run_id}}
    payload = initial
    update_manifest(run_dir, status="running", waiting_at=None, pid=os.getpid())
    STOP_REQUESTED.clear()
    stack = contextlib.ExitStack()
    stack.enter_context(_stop_on_signals())
    try:
        emit({"type": "run_started" if initial else "run_resumed", "run_id": run_id})
        while True:
            if payload is None:
                snapshot = graph.get_state(config)
                if snapshot.interrupts:
                    request = GateRequest.model_validate(snapshot.interrupts[0].value)
                    decision = policy.decide(request)
                    if decision is None:
                        return _wait(run_dir, run_id, request, emit, snapshot.values,
                                     policy.unmet)
                    decision = GateDecision.model_validate(
                        {**decision.model_dump(), "gate": request.gate})
                    _record(run_dir, request, decision, emit)
                    payload = Command(resume=decision.model_dump())
                elif not snapshot.values:  # killed before the first checkpoint: start over
                    payload = initial_state(run_dir)
                elif not snapshot.next and not snapshot.tasks:
                    # `next` leaves out tasks whose writes are saved: a node that finished
                    # while its step was cut short (a signal between its end and the step's
                    # checkpoint) has a task with writes and no `next`; streaming None
                    # applies them and goes on. Only no tasks at all means the run ended.
                    return _finish(run_dir, run_id, snapshot.values, emit)
            for mode, chunk in graph.stream(
                payload, config, stream_mode=["updates", "custom", "tasks"]
            ):
                if mode == "custom":
                    emit(chunk)
                elif mode == "tasks" and "result" not in chunk and chunk["name"] in NODES:
                    emit({"type": "node_started", "node": chunk["name"]})
                elif mode == "updates":
                    for node, update in chunk.items():
                        if node == "__interrupt__":
                            emit({"type": "gate_waiting", **update[0].value})
                        elif node in NODES:
                            emit({"type": "node_finished", "node": node, **_summary(update)})
            payload = None
    except (KeyboardInterrupt, SystemExit):
        STOP_REQUESTED.set()  # the node's thread sees it (agent/graph/stop.py)
        raise
    except Exception as exc:  # a failed node: record it; resume re-runs that node
        values = graph.get_state(config).values
        msg = f"{type(exc).__name__}: {exc}"
        emit({"type": "run_failed", "error": msg})
        update_manifest(run_dir, status="failed", error=msg)
        return Outcome("failed", run_id, run_dir, error=msg, values=values)
    finally:
        stack.close()
        with contextlib.suppress(Exception):
            saver.conn.close()


@contextlib.contextmanager
def _stop_on_signals():
    """Ctrl-C (and a SIGTERM that has a handler, as the fine-tuning worker's) also sets
    STOP_REQUESTED, at once: LangGraph waits for a running node before the interrupt
    leaves `graph.stream`, so a node that waits on something outside (a provider's job)
    must hear of the stop from the handler itself."""
    import signal
    import threading

    saved = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            previous = signal.getsignal(sig)
            if callable(previous):
                def handler(signum, frame, previous=previous):
                    STOP_REQUESTED.set()
                    previous(signum, frame)

                saved[sig] = previous
                signal.signal(sig, handler)
    try:
        yield
    finally:
        for sig, previous in saved.items():
            signal.signal(sig, previous)


def initial_state(run_dir: Path) -> dict:
    """The graph's input, rebuilt from the manifest written when the run was created."""
    manifest = read_manifest(run_dir)
    return {
        "run_id": manifest["run_id"],
        "run_dir": str(Path(run_dir).resolve()),
        **manifest["inputs"],
        "status": "running",
    }


def _record(run_dir: Path, request: GateRequest, decision: GateDecision, emit) -> None:
    """Every decision, with where it came from, in events.jsonl and manifest.json."""
    record = {"gate": request.gate, "passed": request.passed, **decision.model_dump()}
    emit({"type": "gate_decision", **record})
    earlier = read_manifest(run_dir).get("decisions_made") or []
    update_manifest(run_dir, decisions_made=[*earlier, record])


def _wait(run_dir, run_id, request: GateRequest, emit, values, unmet: str = "") -> Outcome:
    update_manifest(run_dir, status="waiting", waiting_at=request.gate)
    emit({"type": "run_waiting", "gate": request.gate, **({"unmet": unmet} if unmet else {})})
    return Outcome(
        "waiting", run_id, run_dir, gate=request.gate, request=request.model_dump(),
        values=values, unmet=unmet,
    )


def _finish(run_dir: Path, run_id: str, values: dict, emit) -> Outcome:
    status = values.get("status", "done")
    lineage = lineage_of(values)
    update_manifest(run_dir, status=status, waiting_at=None, finished=True, **lineage)
    emit({"type": "run_finished", "status": status})
    return Outcome(status, run_id, run_dir, values=values)


def lineage_of(values: dict) -> dict:
    """What a reader needs to trace a result to its inputs."""
    from ftagent.tools.config.train_config import load_config

    report = values.get("data_report") or {}
    plan = values.get("plan") or {}
    ev = values.get("eval_report") or {}
    cfg = {}
    if values.get("config_path") and Path(values["config_path"]).exists():
        cfg = load_config(values["config_path"]).model_dump()
    return {
        "data": {
            "path": report.get("source"),
            "sha256": report.get("sha256"),
            "schema": report.get("schema_detail"),
            "splits": report.get("splits"),
            "split_sha256": report.get("split_sha256"),
        },
        "base_model": {
            "name": plan.get("model"),
            "path": plan.get("model_path"),
            "params": plan.get("params"),
        },
        "method": plan.get("method"),
        "config": cfg,
        "attempts": values.get("attempt"),
        "metrics": {
            "base": ev.get("base"),
            "tuned": ev.get("tuned"),
            "primary_metric": ev.get("primary_metric"),
        },
        "decisions": values.get("decisions"),
        "artifacts": {
            k: v for k, v in (values.get("deployment") or {}).items()
            if k in ("merged", "adapter", "model_id")  # model_id: a provider-tuned model
        },
    }
