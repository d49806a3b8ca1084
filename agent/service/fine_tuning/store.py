"""Where files, jobs and job events live: one SQLite database and two folders under the
fine-tuning root (`$FTAGENT_HOME/fine_tuning` unless the server is told otherwise).

    fine_tuning.sqlite   files, jobs, job events (a JSON document a row, plus the
                         columns the queries sort and filter on)
    files/<file id>      an upload, byte for byte as it came; the name is the generated id,
                         never the client's filename (that is metadata in the database)
    jobs/<job id>/       what a job makes: the checked copy of its data, the workflow run

A server restarted finds its jobs here. One connection behind a lock: the routes (event
loop and pool threads) and the job manager's thread share it, and every call is short.
"""

from __future__ import annotations

import json
import re
import secrets
import sqlite3
import threading
import time
from pathlib import Path

DB_NAME = "fine_tuning.sqlite"
FILE_ID = re.compile(r"file-[0-9a-f]{24}")
JOB_ID = re.compile(r"ftjob-[0-9a-f]{24}")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS files (
    id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, purpose TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS jobs (
    id TEXT PRIMARY KEY, created_at INTEGER NOT NULL, status TEXT NOT NULL, doc TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS job_events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT, job_id TEXT NOT NULL, created_at REAL NOT NULL,
    doc TEXT NOT NULL);
CREATE INDEX IF NOT EXISTS job_events_job ON job_events (job_id, seq);
"""


class Store:
    def __init__(self, root: str | Path):
        self.root = Path(root).expanduser().resolve()
        for folder in (self.root, self.root / "files", self.root / "jobs"):
            folder.mkdir(parents=True, exist_ok=True)
            folder.chmod(0o700)  # uploads are the users' data
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.root / DB_NAME, check_same_thread=False,
                                   isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def _rows(self, sql: str, args: tuple = ()) -> list[dict]:
        with self._lock:
            return [json.loads(r[0]) for r in self._db.execute(sql, args).fetchall()]

    def _run(self, sql: str, args: tuple = ()) -> None:
        with self._lock:
            self._db.execute(sql, args)

    # ---- files -------------------------------------------------------------------------

    def new_file_id(self) -> str:
        return f"file-{secrets.token_hex(12)}"

    def file_path(self, file_id: str) -> Path:
        """The upload's path: built from a generated id only, checked against its shape."""
        if not FILE_ID.fullmatch(file_id):
            raise ValueError(f"not a file id: {file_id!r}")
        return self.root / "files" / file_id

    def add_file(self, doc: dict) -> dict:
        self._run("INSERT INTO files (id, created_at, purpose, doc) VALUES (?, ?, ?, ?)",
                  (doc["id"], doc["created_at"], doc["purpose"], json.dumps(doc)))
        return doc

    def file(self, file_id: str) -> dict | None:
        rows = self._rows("SELECT doc FROM files WHERE id = ?", (file_id,))
        return rows[0] if rows else None

    def files(self, purpose: str | None = None) -> list[dict]:
        """Newest first."""
        if purpose:
            return self._rows("SELECT doc FROM files WHERE purpose = ? "
                              "ORDER BY created_at DESC, rowid DESC", (purpose,))
        return self._rows("SELECT doc FROM files ORDER BY created_at DESC, rowid DESC")

    def delete_file(self, file_id: str) -> bool:
        if self.file(file_id) is None:
            return False
        self.file_path(file_id).unlink(missing_ok=True)
        self._run("DELETE FROM files WHERE id = ?", (file_id,))
        return True

    # ---- jobs --------------------------------------------------------------------------

    def new_job_id(self) -> str:
        return f"ftjob-{secrets.token_hex(12)}"

    def job_dir(self, job_id: str) -> Path:
        if not JOB_ID.fullmatch(job_id):
            raise ValueError(f"not a job id: {job_id!r}")
        return self.root / "jobs" / job_id

    def add_job(self, doc: dict) -> dict:
        self._run("INSERT INTO jobs (id, created_at, status, doc) VALUES (?, ?, ?, ?)",
                  (doc["id"], doc["created_at"], doc["status"], json.dumps(doc)))
        return doc

    def job(self, job_id: str) -> dict | None:
        rows = self._rows("SELECT doc FROM jobs WHERE id = ?", (job_id,))
        return rows[0] if rows else None

    def jobs(self, statuses: tuple[str, ...] = ()) -> list[dict]:
        """Newest first; only those in `statuses` when given."""
        if statuses:
            marks = ",".join("?" * len(statuses))
            return self._rows(f"SELECT doc FROM jobs WHERE status IN ({marks}) "
                              "ORDER BY created_at DESC, rowid DESC", statuses)
        return self._rows("SELECT doc FROM jobs ORDER BY created_at DESC, rowid DESC")

    def update_job(self, job_id: str, **fields) -> dict:
        with self._lock:  # read-modify-write in one critical section
            row = self._db.execute("SELECT doc FROM jobs WHERE id = ?", (job_id,)).fetchone()
            doc = json.loads(row[0]) | fields
            self._db.execute("UPDATE jobs SET status = ?, doc = ? WHERE id = ?",
                             (doc["status"], json.dumps(doc), job_id))
        return doc

    # ---- job events (the job's own; the workflow's are read from its run folder) --------

    def add_event(self, job_id: str, message: str, level: str = "info",
                  data: dict | None = None) -> None:
        doc = {"message": message, "level": level, "data": data}
        self._run("INSERT INTO job_events (job_id, created_at, doc) VALUES (?, ?, ?)",
                  (job_id, time.time(), json.dumps(doc)))

    def events(self, job_id: str) -> list[dict]:
        """Oldest first, each with its sequence number and time."""
        with self._lock:
            rows = self._db.execute("SELECT seq, created_at, doc FROM job_events "
                                    "WHERE job_id = ? ORDER BY seq", (job_id,)).fetchall()
        return [{"seq": seq, "time": t, **json.loads(doc)} for seq, t, doc in rows]
