"""The runs: a table of every known run (id, status, goal, model, metrics); enter opens
one, `r` resumes it. Dismissed with ("open" | "resume", run_dir) or None."""

from __future__ import annotations

from pathlib import Path

from textual import work
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import DataTable, Label

COLUMNS = ("run id", "status", "goal", "model", "metrics")


class RunsScreen(ModalScreen[tuple[str, str] | None]):
    BINDINGS = [
        Binding("enter", "choose('open')", "Open", priority=True),
        Binding("r", "choose('resume')", "Resume"),
        Binding("escape,q", "close", "Close"),
    ]

    def __init__(self, runs_root: Path) -> None:
        super().__init__()
        self.runs_root = runs_root
        self.rows: dict[str, dict] = {}

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog", classes="runs"):
            yield Label("Runs  ·  enter opens  ·  r resumes  ·  escape closes",
                        id="runs-title")
            table = DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
            table.add_columns(*COLUMNS)
            table.loading = True
            yield table

    def on_mount(self) -> None:
        self.query_one(DataTable).focus()
        self._load()

    @work(thread=True, exclusive=True)
    def _load(self) -> None:
        """Reading every manifest is file I/O: off the UI thread."""
        from ftagent.tui.engine import list_runs_info

        rows = list_runs_info(self.runs_root)
        self.app.call_from_thread(self._fill, rows)

    def _fill(self, rows: list[dict]) -> None:
        table = self.query_one(DataTable)
        for r in rows:
            self.rows[r["run_dir"]] = r
            status = r["status"] + (f" ({r['gate']})" if r.get("gate") else "")
            table.add_row(r["run_id"], status, (r.get("goal") or "")[:48],
                          str(r.get("model") or "-")[:40], r.get("metrics") or "",
                          key=r["run_dir"])
        table.loading = False
        if not rows:
            self.query_one("#runs-title", Label).update(
                "No runs yet: start one with /workflow:fine-tuning  ·  escape closes")

    def action_choose(self, what: str) -> None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value
        self.dismiss((what, key))

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        event.stop()
        self.dismiss(("open", event.row_key.value))

    def action_close(self) -> None:
        self.dismiss(None)
