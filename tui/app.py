"""The ftagent terminal app: a chat with slash commands that drives the same engine as
headless runs (`agent.service.session.drive`, injected), in a thread worker whose events arrive
as messages. Heavy libraries (torch, transformers, langgraph) load only in workers, so
the first screen paints before any of them is imported.

This module is the composition root: the App class with its state, bindings, screen and
the input line. Each job lives in its own module, mixed into the App:

- tui/slash_commands.py  what each /command does (parsing: tui/commands.py)
- tui/gates.py           the gate dialog, the config editor, deciding a gate
- tui/run_watch.py       worker messages -> steps, side panel, training panel, chat; runs list
- tui/workers.py         the thread workers that drive the engine
- tui/assistant_chat.py  free text -> the conversational agent
- tui/serving.py         /serve and its server process

Screens are in tui/screens/, widgets in tui/widgets/, messages in tui/messages.py and the
styles in app.tcss.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from pathlib import Path

from ftagent.tui.assistant_chat import AssistantChat
from ftagent.tui.commands import CommandError, parse
from ftagent.tui.gates import GateHandling
from ftagent.tui.palette import FtagentCommands
from ftagent.tui.run_watch import RunWatching
from ftagent.tui.screens.main import MainScreen
from ftagent.tui.serving import Serving
from ftagent.tui.slash_commands import SlashCommands
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


class FtagentApp(SlashCommands, GateHandling, RunWatching, EngineWorkers, AssistantChat,
                 Serving, App):
    """`runs_root`: where new runs go (default: $FTAGENT_RUNS_DIR or ./runs); `driver`:
    the workflow driver with drive()'s signature (default: agent.service.session.drive)."""

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
        # The state every mixin shares; only the UI thread changes it.
        self.run_dir: Path | None = None
        self.tracker = StepTracker()
        self.request: dict | None = None  # the gate the run waits at
        self.values: dict = {}  # the workflow state the driver last returned
        self.busy = False  # the driver is running (one run at a time)
        self.deciding = False  # the driver resumes after a decision: no "resuming" line
        self.data_path: str | None = None
        self.model_name: str | None = None
        self.provider: dict = {}  # the next run's provider options (base_url, api_key_env)
        self.info: dict = {}

    def get_default_screen(self) -> MainScreen:
        return self.main

    def on_mount(self) -> None:
        self.theme = "textual-dark"
        if self.offer_resume:
            self._scan_runs()

    def on_unmount(self) -> None:
        self._stop_server()  # never leave a server behind

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
        """The side panel: the step list, and the run (or, before one, the next run's
        model and data)."""
        self.main.query_one(StepsPanel).show(self.tracker)
        info = dict(self.info)
        if not self.run_dir:
            where = self.provider.get("base_url")
            info.update(model=f"{self.model_name} at {where}" if where else self.model_name,
                        data=self.data_path)
        self.main.query_one(RunPanel).show(info)

    # ---- the input line ------------------------------------------------------------

    @on(Input.Submitted, "#command")
    def _submitted(self, event: Input.Submitted) -> None:
        """A line starting with "/" is a command (tui/slash_commands.py); anything else
        goes to the assistant (tui/assistant_chat.py)."""
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

    # ---- actions (keys and the command palette) --------------------------------------

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
