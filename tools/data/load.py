"""Read JSONL training data into canonical chat examples, with errors that name file,
line and field.

Canonical form: `{"messages": [{"role": ..., "content": ...}, ...]}`. Accepted inputs per
line: chat `messages`, Alpaca `instruction`/`input`/`output`, or `prompt`/`completion`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

ROLES = ("system", "user", "assistant")


class DataError(ValueError):
    """Bad input data; the message names the file, the line and the field."""

    def __init__(self, path: Path | str, message: str, line: int | None = None, field: str = ""):
        self.path, self.line, self.field = str(path), line, field
        where = f"{self.path}:{line}" if line else self.path
        what = f" field '{field}':" if field else ""
        super().__init__(f"{where}:{what} {message}")


@dataclass
class Example:
    messages: list[dict]
    line: int  # 1-based line in the source file
    source_format: str


@dataclass
class LoadedData:
    path: Path
    examples: list[Example] = field(default_factory=list)
    formats: dict[str, int] = field(default_factory=dict)


def _to_messages(row: dict, path: Path, line: int) -> tuple[list[dict], str]:
    if "messages" in row:
        msgs = row["messages"]
        if not isinstance(msgs, list) or not msgs:
            raise DataError(path, "must be a non-empty list of {role, content}", line, "messages")
        out = []
        for i, m in enumerate(msgs):
            if not isinstance(m, dict) or "role" not in m or "content" not in m:
                raise DataError(
                    path, "each message needs 'role' and 'content'", line, f"messages[{i}]"
                )
            content = m["content"]
            if content is None:
                content = ""
            if not isinstance(content, str):
                raise DataError(path, "content must be a string", line, f"messages[{i}].content")
            out.append({"role": str(m["role"]), "content": content})
        return out, "messages"
    if "instruction" in row and "output" in row:
        prompt = str(row.get("instruction") or "")
        extra = str(row.get("input") or "")
        user = f"{prompt}\n\n{extra}" if extra.strip() else prompt
        msgs = [
            {"role": "user", "content": user},
            {"role": "assistant", "content": str(row["output"] or "")},
        ]
        if row.get("system"):
            msgs.insert(0, {"role": "system", "content": str(row["system"])})
        return msgs, "alpaca"
    if "prompt" in row and "completion" in row:
        return [
            {"role": "user", "content": str(row["prompt"] or "")},
            {"role": "assistant", "content": str(row["completion"] or "")},
        ], "prompt_completion"
    keys = ", ".join(sorted(row)) or "none"
    raise DataError(
        path,
        f"unknown record format (keys: {keys}); expected 'messages', "
        "'instruction'+'output', or 'prompt'+'completion'",
        line,
    )


def load_examples(path: str | Path) -> LoadedData:
    """Parse a JSONL file; the first malformed line stops loading with its line number."""
    path = Path(path)
    if not path.exists():
        raise DataError(path, "file not found; pass --data with a JSONL file of chat examples")
    if path.is_dir():
        raise DataError(path, "is a folder; pass a .jsonl file")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        line = path.read_bytes()[: exc.start].count(b"\n") + 1
        raise DataError(path, f"not valid UTF-8 ({exc.reason})", line) from None
    data = LoadedData(path=path)
    for lineno, raw in enumerate(text.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            row = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(
                path, f"malformed JSON ({exc.msg} at column {exc.colno})", lineno
            ) from None
        if not isinstance(row, dict):
            raise DataError(path, "each line must be a JSON object", lineno)
        messages, fmt = _to_messages(row, path, lineno)
        data.examples.append(Example(messages=messages, line=lineno, source_format=fmt))
        data.formats[fmt] = data.formats.get(fmt, 0) + 1
    if not data.examples:
        raise DataError(path, "the file is empty: it holds no examples")
    return data
