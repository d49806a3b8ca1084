"""The input line: slash-command completion (greyed, accepted with Tab or →) and history
(↑/↓), as in a shell."""

from __future__ import annotations

from ftagent.tui.commands import complete
from textual.binding import Binding
from textual.suggester import Suggester
from textual.widgets import Input


class SlashSuggester(Suggester):
    """Completes command names and their options from the command table."""

    def __init__(self) -> None:
        super().__init__(use_cache=False, case_sensitive=True)

    async def get_suggestion(self, value: str) -> str | None:
        return complete(value)


class CommandInput(Input):
    BINDINGS = [
        Binding("up", "history(-1)", "Previous command", show=False),
        Binding("down", "history(1)", "Next command", show=False),
        Binding("tab", "complete", "Complete", show=False),
    ]

    def __init__(self, **kwargs) -> None:
        super().__init__(suggester=SlashSuggester(), **kwargs)
        self.history: list[str] = []
        self._index = 0  # len(history) means "the line being typed"
        self._draft = ""

    def remember(self, line: str) -> None:
        if line and (not self.history or self.history[-1] != line):
            self.history.append(line)
        self._index = len(self.history)
        self._draft = ""

    def action_history(self, delta: int) -> None:
        if not self.history:
            return
        if self._index == len(self.history):
            self._draft = self.value
        self._index = max(0, min(len(self.history), self._index + delta))
        self.value = self.history[self._index] if self._index < len(self.history) else self._draft
        self.cursor_position = len(self.value)

    def action_complete(self) -> None:
        if self._suggestion and self._suggestion != self.value:
            self.value = self._suggestion
            self.cursor_position = len(self.value)
        else:
            self.screen.focus_next()
