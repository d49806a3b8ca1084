"""The chat log: one Markdown block per message, newest at the bottom."""

from __future__ import annotations

from textual.containers import VerticalScroll
from textual.widget import Widget
from textual.widgets import Markdown, Static


class ChatMessage(Markdown):
    """A message rendered as Markdown (code blocks, tables); its role picks the style."""


class ChatLog(VerticalScroll):
    """Messages from the person, the agent and the engine's events."""

    can_focus = False

    def add(self, markdown: str, role: str = "agent") -> Widget:
        widget = ChatMessage(markdown, classes=role)
        self._mount_at_end(widget)
        return widget

    def error(self, line: str) -> Widget:
        """One line, no Markdown: what went wrong and, for commands, the usage."""
        widget = Static(line, classes="error", markup=False)
        self._mount_at_end(widget)
        return widget

    def add_widget(self, widget: Widget) -> Widget:
        self._mount_at_end(widget)
        return widget

    def _mount_at_end(self, widget: Widget) -> None:
        self.mount(widget)
        self.call_after_refresh(self.scroll_end, animate=False)

    def clear(self) -> None:
        self.remove_children()

    def text(self) -> str:
        """Everything in the log as source text (for tests and the tmux check)."""
        parts = []
        for child in self.children:
            if isinstance(child, Markdown):
                parts.append(child.source)
            elif isinstance(child, Static):
                parts.append(str(child.content))
        return "\n".join(parts)
