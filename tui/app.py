"""The ftagent terminal app: a chat with slash commands that drives the same engine as
headless runs (`agent.session.drive`, injected), in a thread worker whose events arrive
as messages. Heavy libraries (torch, transformers, langgraph) load only in workers, so
the first screen paints before any of them is imported."""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from ftagent.tui.assistant_chat import AssistantChat
from ftagent.tui.commands import COMMANDS, CommandError, ParsedCommand, help_markdown, parse
from ftagent.tui.gates import STEP_GATES, GateHandling
from ftagent.tui.palette import FtagentCommands
from ftagent.tui.run_watch import RunWatching
from ftagent.tui.screens.main import MainScreen
from ftagent.tui.serving import Serving
from ftagent.tui.steps import StepTracker
from ftagent.tui.widgets.chat import ChatLog
from ftagent.tui.widgets.command_input import CommandInput
from ftagent.tui.widgets.sidebar import RunPanel, StepsPanel
from ftagent.tui.widgets.training import TrainingPanel
from ftagent.tui.workers import EngineWorkers
from textual import on
from textual.app import App
from textual.binding import Binding
from textual.widgets import Input


class FtagentApp(EngineWorkers, AssistantChat, Serving, GateHandling, RunWatching, App):
    """`runs_root`: where new runs go (default: $FTAGENT_RUNS_DIR or ./runs); `driver`:
    the workflow driver with drive()'s signature (default: agent.session.drive)."""

    CSS_PATH = "app.tcss"
    TITLE = "ftagent"
    SUB_TITLE = "fine-tuning assistant"
    COMMANDS = App.COMMANDS | {FtagentCommands}
    BINDINGS = [
        Binding("f1", "help", "Help", priority=True),
        Binding("question_mark", "help", "Help", key_display="?"),
        Binding("ctrl+r", "show_runs", "Runs"),
        Binding("ctrl+g", "show_gate", "Gate"),
        Binding("ctrl+o", "edit_config", "Config"),
        Binding("ctrl+t", "toggle_dark", "Theme"),
    ]

    def __init__(self, runs_root: Path | None = None, driver: Callable | None = None,
                 offer_resume: bool = True) -> None:
        super().__init__()
        if runs_root is None:
            from ftagent.tools.paths import default_runs_dir

            runs_root = default_runs_dir()
        self.runs_root = Path(runs_root)
        self.driver = driver
        self.offer_resume = offer_resume
        self.main = MainScreen()
        self.run_dir: Path | None = None
        self.tracker = StepTracker()
        self.request: dict | None = None  # the gate the run waits at
        self.values: dict = {}  # the workflow state the driver last returned
        self.busy = False  # the driver is running (one run at a time)
        self.deciding = False  # the driver resumes after a decision: no "resuming" line
        self.data_path: str | None = None
        self.model_name: str | None = None
        self.info: dict = {}

    def get_default_screen(self) -> MainScreen:
        return self.main

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        if self.offer_resume:
            self._scan_runs()

    # ---- widgets -------------------------------------------------------------------

    @property
    def chat(self) -> ChatLog:
        return self.main.query_one(ChatLog)

    @property
    def training(self) -> TrainingPanel:
        return self.main.query_one(TrainingPanel)

    def say(self, markdown: str, role: str = "agent") -> None:
        self.chat.add(markdown, role)

    def error(self, line: str) -> None:
        self.chat.error(f"✗ {line}")

    def _show_info(self) -> None:
        self.main.query_one(StepsPanel).show(self.tracker)
        info = dict(self.info)
        if not self.run_dir:
            info.update(model=self.model_name, data=self.data_path)
        self.main.query_one(RunPanel).show(info)

    # ---- the input line ------------------------------------------------------------

    @on(Input.Submitted, "#command")
    def _submitted(self, event: Input.Submitted) -> None:
        line = event.value.strip()
        box = self.main.query_one(CommandInput)
        box.value = ""
        if not line:
            return
        box.remember(line)
        self.say(f"› {line}" if line.startswith("/") else line, role="user")
        if not line.startswith("/"):
            self._send_to_assistant(line)
            return
        try:
            command = parse(line)
        except CommandError as exc:
            self.error(str(exc))
            return
        self.dispatch(command)

    def dispatch(self, command: ParsedCommand) -> None:
        handler = getattr(self, "cmd_" + command.name.replace(":", "_").replace("-", "_"))
        try:
            handler(**command.args)
        except CommandError as exc:
            self.error(f"{exc}. Usage: {COMMANDS[command.name].usage}")

    # ---- commands ------------------------------------------------------------------

    def cmd_workflow_fine_tuning(self, goal: str, data: str | None = None,
                                 model: str | None = None, max_attempts: str = "2") -> None:
        data = data or self.data_path
        if not data:
            raise CommandError("needs --data PATH (or set it first with /data PATH)")
        if not max_attempts.isdigit() or int(max_attempts) < 1:
            raise CommandError(f"--max-attempts must be a whole number from 1, got "
                               f"'{max_attempts}'")
        self._not_busy()
        self.data_path, self.model_name = data, model or self.model_name
        self.busy = True
        self.say(f"Checking `{data}` and the model, then planning…")
        self._start_run(goal, data, self.model_name, int(max_attempts))

    def cmd_workflow_dataset_engineering(self, path: str) -> None:
        self.say(f"Validating `{path}` (every check of `ftagent data validate`)…")
        self._side_task("validate", path)

    def cmd_workflow_model_evaluation(self, base: str, tuned: str, test: str) -> None:
        self.say(f"Scoring `{base}` against `{tuned}` on `{test}` (with the probes)…")
        self._side_task("evaluate", base, tuned, test)

    def cmd_plan(self) -> None:
        text = self._run_file("plan.md")
        self.say(text) if text else self.error("no plan yet: the planner has not run")

    def cmd_data(self, path: str | None = None) -> None:
        if path is None:
            text = self._run_file("data/report.md")
            self.say(text) if text else self.error(
                "the run has no data report yet; /data PATH sets the next run's data")
            return
        self.data_path = path
        self._show_info()
        self.say(f"Data for the next run: `{path}`. Checking it…")
        self._side_task("validate", path)

    def cmd_config(self) -> None:
        self.action_edit_config()

    def cmd_train(self) -> None:
        self._step("train")

    def cmd_eval(self) -> None:
        self._step("eval")

    def cmd_deploy(self) -> None:
        self._step("deploy")

    def cmd_status(self) -> None:
        if not self.run_dir:
            self.say("No run yet. Start one with "
                     '`/workflow:fine-tuning "what the model should do" --data FILE`.')
            return
        from ftagent.tui.engine import run_info
        from ftagent.tui.reports import status_markdown

        self.info = run_info(self.run_dir)
        self._show_info()
        self.say(status_markdown(self.info, self.tracker))

    def cmd_runs(self) -> None:
        self.action_show_runs()

    def cmd_resume(self, run_id: str) -> None:
        self._not_busy()
        self.busy = True
        self._resume(run_id)

    def cmd_approve(self) -> None:
        self.decide({"action": "approve"})

    def cmd_reject(self, reason: str) -> None:
        self.decide({"action": "reject", "reason": reason})

    def cmd_model(self, name: str) -> None:
        self.model_name = name
        self._show_info()
        self.say(f"Base model for the next run: `{name}`.")

    def cmd_help(self) -> None:
        self.say("## Commands\n\n" + help_markdown()
                 + "\n\nKeys: `?` help · `ctrl+p` palette · `ctrl+r` runs · `ctrl+g` gate · "
                 "`ctrl+t` theme · `ctrl+q` quit")

    def cmd_clear(self) -> None:
        self.chat.clear()

    def cmd_quit(self) -> None:
        self.exit()

    def on_unmount(self) -> None:
        self._stop_server()  # never leave a server behind

    def _not_busy(self) -> None:
        if self.busy:
            raise CommandError(f"run {self.info.get('run_id', '')} is in progress; wait for "
                               "its next gate")

    def _run_file(self, rel: str) -> str:
        if not self.run_dir or not (self.run_dir / rel).exists():
            return ""
        return (self.run_dir / rel).read_text(encoding="utf-8")

    def _step(self, which: str) -> None:
        """A step's gate when the run waits there, else its result, else continue."""
        from ftagent.tui import reports

        if not self.run_dir:
            raise CommandError("no run yet")
        if self.request and self.request["gate"] in STEP_GATES[which]:
            self.action_show_gate()
            return
        render = {"train": reports.train_markdown, "eval": reports.eval_markdown,
                  "deploy": lambda d: reports.deploy_markdown(d, self.values)}[which]
        text = render(self.run_dir)
        if text:
            self.say(text)
            if which == "train" and (rows := reports.loss_rows(self.run_dir)):
                from ftagent.tui.widgets.loss_plot import LossPlot

                self.chat.add_widget(LossPlot(rows, classes="chat-plot"))
        elif self.busy:
            self.say("Not there yet: the run is working; progress shows as it goes.")
        elif self.request:
            self.say(f"The run waits at gate **{self.request['gate']}** first: `/approve`, "
                     "`/reject REASON`, or `ctrl+g` to see it.")
        elif self.info.get("status") in ("interrupted", "failed"):
            self._not_busy()
            self.busy = True
            self._resume(self.run_dir)
        else:
            self.say("That step has no result in this run.")

    # ---- actions -------------------------------------------------------------------

    def action_help(self) -> None:
        from ftagent.tui.screens.help import HelpScreen

        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen())

    def action_toggle_dark(self) -> None:
        self.theme = "textual-light" if self.theme == "textual-dark" else "textual-dark"

    def action_status(self) -> None:
        self.cmd_status()

    def action_new_run(self) -> None:
        box = self.main.query_one(CommandInput)
        box.value = '/workflow:fine-tuning "" --data '
        box.cursor_position = len('/workflow:fine-tuning "')
        box.focus()


def run_app(runs_root: Path | None = None) -> int:
    """`ftagent` with no arguments. Quitting while the driver works ends the process at
    once: the training job runs in its own session and keeps going, and the run (its
    manifest says running, its process is gone) is offered for resuming next time."""
    import asyncio

    app = FtagentApp(runs_root=runs_root)
    # Our own loop: asyncio.run() would join the worker threads on the way out, i.e. wait
    # for the driver to reach its next gate.
    loop = asyncio.new_event_loop()
    app.run(loop=loop)
    if app.busy and app.run_dir:
        print(f"Run {app.run_dir.name} stopped mid-step; `ftagent` offers to resume it "
              f"(or: ftagent resume {app.run_dir.name}).", file=sys.stderr)
        sys.stderr.flush()
        sys.stdout.flush()
        os._exit(0)  # the driver thread would otherwise hold the exit until its next gate
    loop.run_until_complete(loop.shutdown_default_executor())
    loop.close()
    return app.return_code or 0
