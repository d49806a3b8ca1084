"""The help screen (`?` / F1): keys and slash commands."""

from __future__ import annotations

from ftagent.tui.commands import help_markdown
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Markdown

KEYS = """\
# Keys

| key | what it does |
|---|---|
| `enter` | run the command line |
| `tab` / `→` | accept the greyed completion |
| `↑` / `↓` | command history |
| `ctrl+p` | command palette |
| `ctrl+r` | runs |
| `ctrl+g` | the waiting gate |
| `ctrl+o` | edit the run's config |
| `ctrl+t` | dark / light theme |
| `?` / `f1` | this help |
| `ctrl+q` | quit (a training job keeps running; you are offered to resume next time) |

At a gate: `a` approve · `r` reject (type the reason, enter) · `e` edit the config ·
`escape` decide later.

# Commands

"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark,f1", "dismiss", "Close")]

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="dialog"):
            yield Markdown(KEYS + help_markdown())
