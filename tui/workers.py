"""The thread workers that drive the engine: start, resume and decide a run, validate data,
compare models, look for runs to resume.

Everything here runs off the UI thread, so it never touches a widget: it posts messages
(tui/messages.py) that the app handles on the UI thread (tui/run_watch.py). The engine
calls (tui/engine.py, agent.service.session) are imported inside each worker so that the
first screen paints before torch, transformers or langgraph load.
"""

from __future__ import annotations

from pathlib import Path

from ftagent.tui.messages import EngineEvent, RunCreated, RunEnded, RunsFound, TaskDone
from textual import work


class EngineWorkers:
    """Mixed into FtagentApp (tui/app.py): uses its `driver` (injected; None means
    agent.service.session.drive), `runs_root` and `model_name`. The group "engine" is
    exclusive: one run is driven at a time."""

    def _emit(self, event: dict) -> None:
        """The driver's event callback: called on the worker thread, so it only posts."""
        self.post_message(EngineEvent(event))

    def _drive(self, run_dir: Path, policy, initial: dict | None) -> None:
        """Run the injected driver to the next gate or the end; RunEnded always follows,
        so the app leaves its busy state whatever happens."""
        driver = self.driver
        if driver is None:
            from ftagent.agent.service.session import drive as driver
        try:
            outcome = driver(run_dir, policy, initial, self._emit)
        except Exception as exc:  # drive records node failures itself; this is the rest
            self.post_message(TaskDone(error=f"{type(exc).__name__}: {exc}"))
            outcome = None
        self.post_message(RunEnded(outcome))

    @work(thread=True, exclusive=True, group="engine")
    def _start_run(self, goal: str, data: str, model: str | None, max_attempts: int,
                   provider: dict | None = None) -> None:
        """`provider`: the provider options chosen with the model (base_url, api_key_env)."""
        from ftagent.agent.service.new_run import InputError, create_workflow_run
        from ftagent.agent.service.session import ApprovalPolicy, initial_state

        try:
            run_dir = create_workflow_run(goal, data, model, self.runs_root, max_attempts,
                                          provider=provider)
        except InputError as exc:
            self.post_message(TaskDone(error=str(exc)))
            self.post_message(RunEnded(None))
            return
        self.post_message(RunCreated(run_dir))
        self._drive(run_dir, ApprovalPolicy(), initial_state(run_dir))

    @work(thread=True, exclusive=True, group="engine")
    def _resume(self, run: str | Path) -> None:
        """`run`: an id typed by the person (looked up under the runs root only), or the
        folder of a run the app itself listed (a Path)."""
        from ftagent.agent.service.session import ApprovalPolicy
        from ftagent.tui.engine import InputError, check_resumable, find_run_dir

        try:
            run_dir = run if isinstance(run, Path) else find_run_dir(run, self.runs_root)
            check_resumable(run_dir)
        except InputError as exc:
            self.post_message(TaskDone(error=str(exc)))
            self.post_message(RunEnded(None))
            return
        self.post_message(RunCreated(run_dir))
        self._drive(run_dir, ApprovalPolicy(), None)

    @work(thread=True, exclusive=True, group="engine")
    def _decide(self, run_dir: Path, gate: str, decision: dict) -> None:
        """Record the person's decision on `gate` (as the audit trail names the button),
        then let the driver resume the graph with it."""
        from ftagent.agent.graph.gates import DecisionError
        from ftagent.agent.service.decisions import one_decision

        button = {"approve": "Approve (a)", "reject": "Reject (r)", "edit": "Edit (e)"}
        try:
            policy = one_decision(gate, **decision, source="tui",
                                  detail=f"{button[decision['action']]} in the {gate} gate")
        except DecisionError as exc:
            self.post_message(TaskDone(error=str(exc)))
            self.post_message(RunEnded(None))
            return
        self._drive(run_dir, policy, None)

    @work(thread=True, exclusive=True, group="tasks")
    def _side_task(self, kind: str, *args: str) -> None:
        """Validate a dataset ("validate", PATH) or compare two models ("evaluate", BASE,
        TUNED, TEST) beside any run: its own group, so it never waits for the driver."""
        from ftagent.agent.service.new_run import is_provider_model
        from ftagent.tui.engine import InputError, evaluate_models, validate_data

        try:
            if kind == "validate":  # a provider's model has no local tokenizer to count with
                local = not is_provider_model(self.model_name, self.provider.get("base_url"))
                text, clean = validate_data(args[0], self.model_name if local else None)
            else:
                text = evaluate_models(*args)
        except InputError as exc:
            self.post_message(TaskDone(error=str(exc)))
            return
        except Exception as exc:  # a tool failing is news for the chat, not a crash
            self.post_message(TaskDone(error=f"{type(exc).__name__}: {exc}"))
            return
        self.post_message(TaskDone(text))

    @work(thread=True, exclusive=True, group="scan")
    def _scan_runs(self) -> None:
        """At start-up: runs under the runs root that stopped before their end."""
        from ftagent.tui.engine import resumable_runs

        runs = resumable_runs(self.runs_root)
        if runs:
            self.post_message(RunsFound(runs))
