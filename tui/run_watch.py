"""Watching runs on the UI thread: the messages the workers post (a run opened, an engine
event, the driver's outcome, a side task's report, runs found at start-up) become the step
list, the side panel, the live training panel and chat lines; and the runs list (ctrl+r)
opens or resumes a run.
"""

from __future__ import annotations

from pathlib import Path

from ftagent.tui.messages import EngineEvent, RunCreated, RunEnded, RunsFound, TaskDone
from ftagent.tui.steps import StepTracker


class RunWatching:
    """Mixed into FtagentApp (tui/app.py): keeps its `run_dir`, `tracker`, `info`,
    `values`, `request`, `busy` and `deciding` up to date with the run being driven."""

    def on_run_created(self, message: RunCreated) -> None:
        self._open(message.run_dir)

    def _open(self, run_dir: Path, replay: bool = True) -> None:
        """Make `run_dir` the app's current run; its step list is rebuilt from the events
        it already has, so a resumed run shows the steps done before."""
        from ftagent.agent.service.runs import read_events
        from ftagent.tui.engine import run_info

        self.run_dir = Path(run_dir)
        self.tracker = StepTracker.from_events(read_events(run_dir)) if replay else StepTracker()
        self.info = run_info(run_dir)
        self.sub_title = f"run {self.info['run_id']}"
        self._show_info()

    def on_engine_event(self, message: EngineEvent) -> None:
        """One driver event: the step list, the training panel (shown while the trainer
        runs), the side panel, and a chat line when the event is worth one."""
        from ftagent.tui.reports import event_line

        event = message.event
        self.tracker.apply(event)
        kind = event.get("type")
        if kind == "train_progress":
            self.training.update_from(event)
        elif kind == "node_started":
            if event["node"] == "trainer":
                self.training.reset(self.tracker.attempt or None)
                self.training.add_class("shown")
            else:
                self.training.remove_class("shown")
        elif kind == "node_finished" and event.get("node") == "planner":
            self.info.update(model=event.get("model"), method=event.get("method"))
        if kind in ("run_started", "run_resumed", "node_started"):
            self.info.update(status="running", gate=None)
        elif kind == "gate_waiting":
            self.info.update(status="waiting", gate=event.get("gate"))
        # After a decision the person knows the run goes on: no "resuming" line.
        line = None if kind == "run_resumed" and self.deciding else event_line(event)
        if line:
            self.say(line, role="event")
        self._show_info()

    def on_run_ended(self, message: RunEnded) -> None:
        """The driver returned: at a gate the dialog opens; at the end, the final report.
        None: the run never started (the error was already posted)."""
        from ftagent.tui.engine import run_info
        from ftagent.tui.reports import final_markdown

        self.busy = self.deciding = False
        outcome = message.outcome
        if outcome is None:
            return
        self.values = outcome.values or {}
        self.info = run_info(outcome.run_dir)
        self._show_info()
        if outcome.status == "waiting":
            self.request = outcome.request
            self.say(f"◆ **Gate {outcome.gate}** — {outcome.request['question']}  \n"
                     "Decide in the dialog (`a` approve · `r` reject · `e` edit), or with "
                     "`/approve` · `/reject REASON` · `/config`.", role="gate")
            self.action_show_gate()
        else:
            self.request = None
            self.training.remove_class("shown")
            self.say(final_markdown(outcome.status, self.values, outcome.run_dir),
                     role="report")

    def on_task_done(self, message: TaskDone) -> None:
        if message.error:
            self.error(message.error)
        else:
            self.say(message.markdown, role="report")

    def on_runs_found(self, message: RunsFound) -> None:
        """At start-up: offer to resume the newest run that stopped before its end."""
        from ftagent.tui.screens.confirm import ConfirmScreen

        run = message.runs[0]
        where = f"waiting at gate **{run['gate']}**" if run["status"] == "waiting" else (
            "stopped mid-step (its process ended)" if run["status"] == "interrupted"
            else "failed")
        more = f"\n\n({len(message.runs) - 1} more in `/runs`.)" if len(message.runs) > 1 else ""
        question = (f"## Resume a run?\n\nRun `{run['run_id']}` ({run['goal']}) is {where}. "
                    f"Resume it from its last checkpoint?{more}")

        def answered(yes: bool | None) -> None:
            if yes and not self.busy:
                self.busy = True
                self._resume(Path(run["run_dir"]))
            else:
                self.say(f"Run `{run['run_id']}` is left as it is: `/resume {run['run_id']}` "
                         "or `/runs` later.")

        self.push_screen(ConfirmScreen(question, yes="Resume", no="Not now"), answered)

    # ---- the runs list (ctrl+r, /runs) -----------------------------------------------

    def action_show_runs(self) -> None:
        from ftagent.tui.screens.runs import RunsScreen

        self.push_screen(RunsScreen(self.runs_root), self._run_chosen)

    def _run_chosen(self, choice: tuple[str, str] | None) -> None:
        """("resume", folder): drive it again; ("open", folder): show it, and pick up the
        gate it waits at so /approve and ctrl+g work on it."""
        if not choice:
            return
        what, run_dir = choice
        if what == "resume":
            if self.busy:
                self.error("a run is in progress; wait for its next gate")
                return
            self.busy = True
            self._resume(Path(run_dir))
            return
        if self.busy:
            self.error("a run is in progress; open another run at its next gate")
            return
        self._open(Path(run_dir))
        self.request = self._waiting_request(Path(run_dir))
        self.cmd_status()

    def _waiting_request(self, run_dir: Path) -> dict | None:
        """A waiting run's gate request, from its last `gate_waiting` event."""
        from ftagent.agent.service.runs import read_events

        if self.info.get("status") != "waiting":
            return None
        for event in reversed(read_events(run_dir)):
            if event.get("type") == "gate_waiting":
                return {k: v for k, v in event.items() if k not in ("type", "time")}
        return None
