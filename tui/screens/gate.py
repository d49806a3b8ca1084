"""A quality gate: what it is about, the evidence, and the decision (approve, reject with
a reason, or edit the config). Dismissed with the decision as a dict, or None to decide
later."""

from __future__ import annotations

from pathlib import Path

from ftagent.tui.reports import gate_markdown, loss_rows
from ftagent.tui.screens.config_editor import ConfigEditorScreen
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Horizontal, Vertical, VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Button, Input, Label, Markdown, Static


class GateScreen(ModalScreen[dict | None]):
    BINDINGS = [
        Binding("a", "approve", "Approve"),
        Binding("r", "reject", "Reject"),
        Binding("e", "edit", "Edit config"),
        Binding("escape", "later", "Decide later"),
    ]

    def __init__(self, request: dict, run_dir: Path | None) -> None:
        super().__init__()
        self.request = request
        self.run_dir = Path(run_dir) if run_dir else None
        self.allowed = set(request.get("allowed") or ("approve", "reject", "edit"))

    def compose(self) -> ComposeResult:
        gate = self.request["gate"]
        passed = "passed" if self.request.get("passed") else "failed"
        with Vertical(id="dialog", classes=f"gate {passed}"):
            yield Label(f"◆ Gate: {gate} — {self.request['title']}", id="gate-title")
            with VerticalScroll(id="evidence"):
                yield Markdown(gate_markdown(self.request, self.run_dir), id="gate-text")
                rows = loss_rows(self.run_dir) if gate == "training" else []
                if rows:
                    from ftagent.tui.widgets.loss_plot import LossPlot

                    yield LossPlot(rows, id="gate-plot")
            yield Input(placeholder="Why? The workflow uses your reason (enter sends, "
                        "escape cancels)", id="reason")
            yield Static("", id="gate-error")
            with Horizontal(classes="buttons"):
                yield Button("Approve (a)", id="approve", variant="success",
                             disabled="approve" not in self.allowed)
                yield Button("Reject (r)", id="reject", variant="error",
                             disabled="reject" not in self.allowed)
                yield Button("Edit (e)", id="edit", variant="primary",
                             disabled="edit" not in self.allowed)
                yield Button("Later (esc)", id="later")

    def on_mount(self) -> None:
        self.query_one("#approve", Button).focus()

    def on_button_pressed(self, event: Button.Pressed) -> None:
        event.stop()
        getattr(self, f"action_{event.button.id or 'later'}")()

    def action_approve(self) -> None:
        if "approve" in self.allowed:
            self.dismiss({"action": "approve"})

    def action_reject(self) -> None:
        if "reject" not in self.allowed:
            return
        reason = self.query_one("#reason", Input)
        reason.add_class("shown")
        reason.focus()

    def action_edit(self) -> None:
        if "edit" not in self.allowed:
            return
        config = self.run_dir / "config.yaml" if self.run_dir else None
        path = config if config and config.exists() else None
        self.app.push_screen(ConfigEditorScreen(path, gate=self.request["gate"]), self._edited)

    def _edited(self, changes: dict | None) -> None:
        if changes:
            self.dismiss({"action": "edit", "changes": changes,
                          "reason": "edited in the terminal app"})
        elif changes is not None:
            self.query_one("#gate-error", Static).update("No changes to send.")

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        reason = event.value.strip()
        if not reason:
            self.query_one("#gate-error", Static).update(
                "A reason is needed: the workflow uses it (\"too slow\", \"use QLoRA\", "
                "\"stop\", ...).")
            return
        self.dismiss({"action": "reject", "reason": reason})

    def action_later(self) -> None:
        reason = self.query_one("#reason", Input)
        if reason.has_class("shown"):
            reason.remove_class("shown")
            self.query_one("#approve", Button).focus()
            return
        self.dismiss(None)
