"""Append-only JSON-lines logs (a run's events.jsonl, a training's metrics.jsonl) that one
process writes while others read them."""

from __future__ import annotations

import json
from pathlib import Path


def append(path: Path, row: dict) -> None:
    """One row as one line: a reader sees it whole or not at all (short appends)."""
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row, default=str) + "\n")


def read(path: Path, stop_at_partial: bool = False) -> list[dict]:
    """Every whole row. A line that does not parse was cut short: by a writer killed
    mid-line (skipped, later rows still count) or, with `stop_at_partial`, by a writer
    that is still writing it (the rows end there)."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if stop_at_partial:
                break
    return rows
