"""Prompt templates and fine-tuning knowledge, kept as data files and loaded by name."""

from __future__ import annotations

from pathlib import Path

HERE = Path(__file__).resolve().parent


def load(name: str) -> str:
    """The text of `prompts/<name>` (e.g. "plan.md")."""
    path = HERE / name
    if not path.is_file():
        raise FileNotFoundError(f"no prompt template '{name}' in {HERE}")
    return path.read_text(encoding="utf-8")
