"""Quality checks on canonical chat examples. Pure functions: no I/O."""

from __future__ import annotations

import hashlib
import json

from pydantic import BaseModel, Field

from tools.data.load import ROLES, Example

MAX_EXAMPLE_ROWS = 5


class CheckResult(BaseModel):
    name: str
    count: int
    examples: list[str] = Field(default_factory=list, description="'line N: field' samples")
    action: str


class ValidationResult(BaseModel):
    total: int
    kept: int
    checks: list[CheckResult]

    @property
    def dropped(self) -> int:
        return self.total - self.kept


def _problem(ex: Example) -> tuple[str, str] | None:
    """(check name, offending field) for the first problem in one example, if any."""
    msgs = ex.messages
    for i, m in enumerate(msgs):
        if m["role"] not in ROLES:
            return "bad_role", f"messages[{i}].role={m['role']!r}"
        if not m["content"].strip():
            return "empty_field", f"messages[{i}].content"
    convo = [m for m in msgs if m["role"] != "system"]
    if any(m["role"] == "system" for m in msgs[1:]):
        return "bad_role_order", "system message not first"
    if not convo or convo[0]["role"] != "user":
        return "bad_role_order", "first turn is not 'user'"
    for a, b in zip(convo, convo[1:], strict=False):
        if a["role"] == b["role"]:
            return "bad_role_order", f"two '{a['role']}' turns in a row"
    if convo[-1]["role"] != "assistant":
        return "bad_role_order", "last turn is not 'assistant'"
    return None


def _fingerprint(ex: Example) -> str:
    return hashlib.sha256(json.dumps(ex.messages, sort_keys=True).encode()).hexdigest()


ACTIONS = {
    "bad_role": "dropped: roles must be system, user or assistant",
    "empty_field": "dropped: empty message content",
    "bad_role_order": "dropped: turns must alternate user/assistant and end with assistant",
    "exact_duplicate": "dropped: the first copy is kept",
}


def validate_examples(examples: list[Example]) -> tuple[list[Example], ValidationResult]:
    """Return the examples worth training on and a per-check report."""
    found: dict[str, list[str]] = {k: [] for k in ACTIONS}
    kept: list[Example] = []
    seen: dict[str, int] = {}
    for ex in examples:
        problem = _problem(ex)
        if problem:
            found[problem[0]].append(f"line {ex.line}: {problem[1]}")
            continue
        fp = _fingerprint(ex)
        if fp in seen:
            found["exact_duplicate"].append(f"line {ex.line}: same as line {seen[fp]}")
            continue
        seen[fp] = ex.line
        kept.append(ex)
    checks = [
        CheckResult(name=k, count=len(v), examples=v[:MAX_EXAMPLE_ROWS], action=ACTIONS[k])
        for k, v in found.items()
    ]
    return kept, ValidationResult(total=len(examples), kept=len(kept), checks=checks)
