"""The main screen: chat log, live training panel and input on the left; workflow steps
and the current run on the right."""

from __future__ import annotations

from ftagent.tui.widgets.chat import ChatLog
from ftagent.tui.widgets.command_input import CommandInput
from ftagent.tui.widgets.sidebar import Sidebar
from ftagent.tui.widgets.training import TrainingPanel
from textual.app import ComposeResult
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.widgets import Footer, Header

WELCOME = """\
# ftagent

Fine-tune a model with a plan, checked data, live training, an evaluation and a deployment
check; every quality gate waits for your decision.

Start with `/workflow:fine-tuning "what the model should do" --data FILE` ·
`/help` lists the commands · `?` the keys · `ctrl+p` the command palette.
"""


class MainScreen(Screen):
    AUTO_FOCUS = "#command"

    def compose(self) -> ComposeResult:
        yield Header(show_clock=False)
        with Horizontal(id="body"):
            with Vertical(id="left"):
                yield ChatLog(id="chat")
                yield TrainingPanel(id="training")
                yield CommandInput(placeholder="/help for commands · ↑↓ history · tab completes",
                                   id="command")
            yield Sidebar(id="sidebar")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one(ChatLog).add(WELCOME, role="welcome")
