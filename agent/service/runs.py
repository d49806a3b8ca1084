"""The run registry: one folder per run, its manifest, its event log, and an index in
$FTAGENT_HOME so `ftagent resume RUN_ID` works from any directory."""

from __future__ import annotations

import json
import os
import re
import secrets
import time
from datetime import UTC, datetime
from importlib import metadata
from pathlib import Path

from ftagent.tools import jsonl_log
from ftagent.tools.atomic import write_json
from ftagent.tools.paths import default_runs_dir, ftagent_home
from ftagent.tools.process import alive

MANIFEST = "manifest.json"
EVENTS = "events.jsonl"
STATE_DB = "state.sqlite"
PACKAGES = (
    "ftagent",
    "torch",
    "transformers",
    "trl",
    "peft",
    "datasets",
    "accelerate",
    "langgraph",
    "langgraph-checkpoint-sqlite",
)


class RunError(RuntimeError):
    pass


def new_run_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%d-%H%M%S-") + secrets.token_hex(2)


def _index_path() -> Path:
    return ftagent_home() / "runs.jsonl"


def package_versions() -> dict[str, str]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            pass
    return out


def create_run(run_dir: Path, run_id: str, inputs: dict) -> Path:
    """Make the run folder; a folder that already holds a run is never reused."""
    run_dir = Path(run_dir).resolve()
    if (run_dir / MANIFEST).exists():
        status = read_manifest(run_dir).get("status")
        raise RunError(
            f"{run_dir} already holds run {read_manifest(run_dir).get('run_id')} "
            f"(status: {status}); finished runs are never overwritten. "
            "Pick another --run-dir, or continue it with ftagent resume."
        )
    if run_dir.exists() and any(run_dir.iterdir()):
        raise RunError(f"{run_dir} exists and is not empty; pick another --run-dir.")
    run_dir.mkdir(parents=True, exist_ok=True)
    write_json(
        run_dir / MANIFEST,
        {
            "run_id": run_id,
            "status": "running",
            "created": _now(),
            "inputs": inputs,
            "packages": package_versions(),
            "pid": os.getpid(),
        },
    )
    index = _index_path()
    index.parent.mkdir(parents=True, exist_ok=True)
    jsonl_log.append(index, {"run_id": run_id, "run_dir": str(run_dir)})
    return run_dir


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def read_manifest(run_dir: Path) -> dict:
    return json.loads((Path(run_dir) / MANIFEST).read_text(encoding="utf-8"))


def update_manifest(run_dir: Path, **fields) -> dict:
    data = read_manifest(run_dir) | fields | {"updated": _now()}
    write_json(Path(run_dir) / MANIFEST, data)
    return data


def append_event(run_dir: Path, event: dict) -> dict:
    event = {"time": round(time.time(), 3), **event}
    jsonl_log.append(Path(run_dir) / EVENTS, event)
    return event


def read_events(run_dir: Path) -> list[dict]:
    """The run's events; a line cut short by a kill is skipped."""
    return jsonl_log.read(Path(run_dir) / EVENTS)


RUN_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
RUN_ID_SHAPE = ("run ids look like 20261202-153000-ab12: letters, digits, '-', '_' and '.', "
                "no path separators and no '..' (`ftagent runs` lists them)")


def _bad_run_id(run_id: str, root: Path) -> RunError:
    return RunError(f"run id {run_id!r} is not a run under {root}; {RUN_ID_SHAPE}")


def find_run(run_id: str, runs_dir: Path | None = None) -> Path:
    """A run folder by id: `runs_dir/ID` (default ./runs), else the id in the run index.

    An id is a plain name, never a path: one with a path separator, `..`, an absolute path,
    or a folder that is a symlink resolving outside the runs root raises RunError, so an id
    typed in the chat, the TUI or by the assistant cannot point ftagent at any other folder.
    A command-line argument that is a folder goes through `find_run_or_folder`."""
    root = Path(runs_dir or default_runs_dir()).resolve()
    run_id = str(run_id)
    if not RUN_ID_RE.fullmatch(run_id) or ".." in run_id:
        raise _bad_run_id(run_id, root)
    local = root / run_id
    if local.is_symlink() or local.exists():
        resolved = local.resolve()
        if resolved == root or not resolved.is_relative_to(root):  # a symlink leading out
            raise _bad_run_id(run_id, root)
        if (resolved / MANIFEST).is_file():
            return resolved
    for entry in reversed(_read_index()):
        if entry.get("run_id") == run_id and (Path(entry["run_dir"]) / MANIFEST).is_file():
            return Path(entry["run_dir"])
    raise RunError(f"no run '{run_id}' found; `ftagent runs` lists the known runs")


def find_run_or_folder(arg: str, runs_dir: Path | None = None) -> Path:
    """For command-line arguments only ("a run id or run folder"): a folder the person named
    on their own command line that holds a run (manifest.json), else `find_run(arg)`. Never
    for ids from the chat, the TUI or the assistant: those go to `find_run`."""
    folder = Path(arg).expanduser()
    if (folder / MANIFEST).is_file():
        return folder.resolve()
    return find_run(arg, runs_dir)


def _read_index() -> list[dict]:
    return jsonl_log.read(_index_path())


def effective_status(manifest: dict) -> str:
    """A run marked running whose process is gone was killed: it can be resumed."""
    status = manifest.get("status", "?")
    if status == "running" and not alive(manifest.get("pid")):
        return "interrupted"
    return status


RESUMABLE = ("interrupted", "waiting", "failed")  # stopped before the end: resume continues


def check_resumable(folder: Path, name: str | None = None,
                    answers: tuple[str, ...] = ()) -> dict:
    """The manifest of a run that may be continued, else RunError in one line: the guard
    `ftagent resume`, the terminal app and the chat all pass through. A finished run is
    never re-run, a run another process drives is left alone, and a decision must answer
    the gate the run waits at."""
    manifest = read_manifest(folder)
    status = effective_status(manifest)
    name = name or Path(folder).name
    if status in ("done", "rejected"):
        raise RunError(f"run {name} is already {status}; finished runs are never re-run")
    if status == "running":
        raise RunError(f"run {name} is still running in another process")
    waiting = manifest.get("waiting_at")
    for gate in answers:  # the gates a decision names (--reject GATE, --edit --gate GATE)
        if status == "waiting" and gate != waiting:
            raise RunError(f"run {name} waits at the {waiting} gate, not {gate}")
    return manifest


def list_runs(runs_dir: Path | None = None) -> list[dict]:
    seen, rows = set(), []
    folders = [Path(e["run_dir"]) for e in _read_index()]
    local = Path(runs_dir or default_runs_dir())
    if local.is_dir():
        folders += sorted(p.resolve() for p in local.iterdir() if (p / MANIFEST).exists())
    for folder in folders:
        if folder in seen or not (folder / MANIFEST).exists():
            continue
        seen.add(folder)
        m = read_manifest(folder)
        rows.append(
            {
                "run_id": m["run_id"],
                "status": effective_status(m),
                "gate": m.get("waiting_at"),
                "goal": m["inputs"].get("goal", ""),
                "created": m.get("created"),
                "run_dir": str(folder),
            }
        )
    return sorted(rows, key=lambda r: r["created"] or "")
