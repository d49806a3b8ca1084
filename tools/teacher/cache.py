"""Answers already paid for, on disk: one SQLite row per request, committed as soon as the
answer arrives, so a run killed half-way resumes where it stopped."""

from __future__ import annotations

import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Answer:
    text: str
    finish_reason: str  # stop | length | error
    prompt_tokens: int
    completion_tokens: int
    created: str  # ISO time the teacher answered
    cached: bool = False


class AnswerCache:
    """`get`/`put` from any thread (one connection guarded by a lock; SQLite in WAL mode)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text TEXT NOT NULL, "
            "finish_reason TEXT NOT NULL, prompt_tokens INTEGER, completion_tokens INTEGER, "
            "created TEXT NOT NULL)")
        self._db.commit()

    def get(self, key: str) -> Answer | None:
        with self._lock:
            row = self._db.execute(
                "SELECT text, finish_reason, prompt_tokens, completion_tokens, created "
                "FROM answers WHERE key = ?", (key,)).fetchone()
        return Answer(*row, cached=True) if row else None

    def put(self, key: str, a: Answer) -> None:
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO answers VALUES (?, ?, ?, ?, ?, ?)",
                (key, a.text, a.finish_reason, a.prompt_tokens, a.completion_tokens, a.created))
            self._db.commit()

    def __len__(self) -> int:
        with self._lock:
            return self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            self._db.close()
