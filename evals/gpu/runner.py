"""Running the check's sections: each one timed, in try/except so one failure is recorded
and the rest still run, within a total time budget (a lent GPU is held for minutes, so
what is measured must come back even when a section hangs or breaks)."""

from __future__ import annotations

import json
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

RESULTS, REPORT = "results.json", "report.md"
TRACEBACK_LINES = 25  # enough to see where it broke; the whole stack is rarely needed


class Skip(Exception):
    """A section that cannot run here (no CUDA, a package not carried): a reason, not a
    failure."""


@dataclass(frozen=True)
class Section:
    name: str
    title: str
    run: Callable  # (ctx) -> dict; the dict may carry "checks" {name: bool} and "summary"
    needs_cuda: bool = False


def status_of(result: dict) -> str:
    """ok, or check_failed when a check the section made did not hold."""
    checks = result.get("checks", {})
    return "ok" if all(checks.values()) else "check_failed"


def run_sections(sections: list[Section], ctx, write: Callable[[dict], None]) -> dict:
    """Run each section in order; results are written after every one, so a run killed
    at its time limit still leaves what it measured."""
    done: dict[str, dict] = {}
    for sec in sections:
        started = time.monotonic()
        entry: dict = {"title": sec.title}
        if started > ctx.deadline:
            entry.update(status="skipped", reason=f"skipped: budget (its {ctx.budget_s:.0f} s "
                         "were spent before this section began)")
        elif sec.needs_cuda and not ctx.cuda:
            entry.update(status="skipped", reason="skipped: needs CUDA")
        else:
            print(f"[gpu-check] {sec.name}...", flush=True)
            try:
                result = sec.run(ctx)
                entry.update(status=status_of(result), result=result)
            except Skip as exc:
                entry.update(status="skipped", reason=f"skipped: {exc}")
            except Exception as exc:  # recorded; the next section still runs
                tail = traceback.format_exc().splitlines()[-TRACEBACK_LINES:]
                entry.update(status="error", error=f"{type(exc).__name__}: {exc}"[:2000],
                             traceback=tail)
        entry["wall_s"] = round(time.monotonic() - started, 1)
        print(f"[gpu-check] {sec.name}: {entry['status']} ({entry['wall_s']} s) "
              f"{entry.get('reason') or entry.get('error') or ''}", flush=True)
        done[sec.name] = entry
        write(done)
    return done


def write_json(path: Path, data: dict) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=1, default=str), encoding="utf-8")
    tmp.replace(path)
