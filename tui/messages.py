"""Messages from thread workers to the UI: workers never touch widgets, they post these."""

from __future__ import annotations

from pathlib import Path

from textual.message import Message


class EngineEvent(Message):
    """One event of the driver (node started/finished, gate, training progress, ...)."""

    def __init__(self, event: dict) -> None:
        super().__init__()
        self.event = event


class RunCreated(Message):
    """A new run folder exists; the driver starts on it next."""

    def __init__(self, run_dir: Path) -> None:
        super().__init__()
        self.run_dir = run_dir


class RunEnded(Message):
    """The driver returned: the run is done, rejected, failed, or waits at a gate."""

    def __init__(self, outcome) -> None:
        super().__init__()
        self.outcome = outcome


class TaskDone(Message):
    """A side task (data validation, model comparison, a check) finished: Markdown to show;
    `error` set when it failed (one line for the chat)."""

    def __init__(self, markdown: str = "", error: str | None = None) -> None:
        super().__init__()
        self.markdown = markdown
        self.error = error


class RunsFound(Message):
    """Runs that stopped before their end, found at start-up: offer to resume one."""

    def __init__(self, runs: list[dict]) -> None:
        super().__init__()
        self.runs = runs
