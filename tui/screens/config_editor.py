"""The config editor: the run's config.yaml in a TextArea, checked with the project's
config model on save (an invalid value shows the error and nothing is written).
Dismissed with the changed fields (dotted keys), {} when nothing changed, or None.

Before a run has a config (the strategy and dataset gates) it edits a mapping of
changes instead: plan choices and config fields, each checked against its model."""

from __future__ import annotations

from pathlib import Path

from ftagent.agent.graph.gates import DecisionError, check_changes
from ftagent.tools.atomic import write_text
from ftagent.tui.config_edit import (
    ConfigTextError,
    changes_template,
    config_changes,
    parse_changes,
    parse_config,
)
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import ModalScreen
from textual.widgets import Button, Label, Static, TextArea


class ConfigEditorScreen(ModalScreen[dict | None]):
    BINDINGS = [
        Binding("ctrl+s", "save", "Save", priority=True),
        Binding("escape", "cancel", "Cancel"),
    ]

    def __init__(self, path: Path | None, gate: str | None = None) -> None:
        super().__init__()
        self.path, self.gate = path, gate
        self.original = path.read_text(encoding="utf-8") if path else changes_template(
            gate or "?")

    def compose(self) -> ComposeResult:
        what = str(self.path) if self.path else f"changes for gate '{self.gate}'"
        with Vertical(id="dialog", classes="editor"):
            yield Label(f"Edit {what}  ·  ctrl+s saves (checked first)  ·  escape cancels",
                        id="editor-title")
            yield TextArea(self.original, show_line_numbers=True, tab_behavior="indent",
                           id="editor")
            yield Static("", id="editor-error")
            with Horizontal(classes="buttons"):
                yield Button("Save (ctrl+s)", id="save", variant="primary")
                yield Button("Cancel (esc)", id="cancel")

    def on_mount(self) -> None:
        self.query_one(TextArea).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        getattr(self, f"action_{event.button.id or 'cancel'}")()

    def action_save(self) -> None:
        text = self.query_one(TextArea).text
        error = self.query_one("#editor-error", Static)
        try:
            if self.path is None:
                changes = parse_changes(text, self.gate)
            else:
                changes = config_changes(parse_config(self.original), parse_config(text))
                if self.gate:  # the same check as every other way of deciding a gate
                    check_changes(self.gate, changes)
        except (ConfigTextError, DecisionError) as exc:
            error.update(f"Not saved: {exc}")
            error.add_class("shown")
            return
        if self.path is not None:
            write_text(self.path, text)
        self.dismiss(changes)

    def action_cancel(self) -> None:
        self.dismiss(None)
