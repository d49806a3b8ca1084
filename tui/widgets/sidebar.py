"""The side panel: the six workflow steps with their status, and the current run."""

from __future__ import annotations

from ftagent.tui.steps import LABELS, STEPS, StepTracker
from rich.markup import escape
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Static

ICONS = {
    "pending": ("○", "$text-muted"),
    "running": ("◐", "$warning"),
    "waiting": ("◆", "$accent"),
    "done": ("✓", "$success"),
    "failed": ("✗", "$error"),
    "rejected": ("⊘", "$error"),
}
WORDS = {"waiting": "waiting at gate"}


class StepsPanel(Static):
    """One line a step: icon, name, status and a detail (gate, step count, attempt)."""

    def on_mount(self) -> None:
        self.show(StepTracker())

    def show(self, tracker: StepTracker) -> None:
        lines = []
        for step in STEPS:
            status = tracker.status[step]
            icon, color = ICONS[status]
            detail = tracker.detail.get(step, "")
            word = WORDS.get(status, status)
            lines.append(f"[{color}]{icon}[/] [b]{LABELS[step]:<9}[/][{color}]{word}[/]"
                         + (f"\n   [dim]{escape(detail)}[/]" if detail else ""))
        self.update("\n".join(lines))


def _short(name: str | None) -> str | None:
    """The last part of a path or hub id: the panel is narrow; /status has it whole."""
    return name.rstrip("/").rsplit("/", 1)[-1] if name else name


class RunPanel(Static):
    """Run id, status, model, method and data of the current run (or the next run's)."""

    def on_mount(self) -> None:
        self.show({})

    def show(self, info: dict) -> None:
        status = info.get("status")
        if status and info.get("gate"):
            status = f"{status} ({info['gate']})"
        rows = [("run", info.get("run_id") or "none yet"), ("status", status),
                ("model", _short(info.get("model")) or "planner picks"),
                ("method", info.get("method")), ("data", _short(info.get("data"))),
                ("result", info.get("metrics"))]
        self.update("\n".join(f"[dim]{k:<7}[/]{escape(str(v))}" for k, v in rows if v))


class Sidebar(Vertical):
    def compose(self) -> ComposeResult:
        yield Label("Workflow", classes="title")
        yield StepsPanel(id="steps")
        yield Label("Run", classes="title")
        yield RunPanel(id="run-info")
