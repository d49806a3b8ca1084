"""A teacher's answer goes through the checks user data gets; one that fails is set aside
with the reason (rejected.jsonl), never trained on."""

from __future__ import annotations

import re

from ftagent.tools.data.checks import pii_kinds
from ftagent.tools.evaluate.metrics import parse_label
from ftagent.tools.teacher.cache import Answer

# "Reply with ... one of: a, b, c." / "one label from: a, b." / "Labels: a, b"
LABEL_LIST = re.compile(r"(?:one of|from|labels?)\s*:\s*([^\n]+)", re.IGNORECASE)


def labels_in_prompt(messages: list[dict]) -> list[str]:
    """The label list a system prompt spells out, or []: at least two short comma-separated
    items after "one of:", "from:" or "labels:"."""
    system = next((m["content"] for m in messages if m["role"] == "system"), "")
    m = LABEL_LIST.search(system)
    if not m:
        return []
    items = [x.strip().strip(".").strip() for x in m.group(1).split(",")]
    items = [x for x in items if x]
    if len(items) < 2 or any(len(x.split()) > 6 for x in items):
        return []
    return items


def answer_problem(a: Answer, max_tokens: int, labels: list[str] | None = None) -> str | None:
    """Why this answer must not be trained on, or None."""
    if a.finish_reason.startswith("error"):
        return f"teacher error ({a.finish_reason[len('error: '):] or 'unknown'})"
    text = a.text.strip()
    if not text:
        return "empty answer"
    if a.finish_reason == "length":
        return f"truncated: the answer reached max_tokens ({max_tokens})"
    if labels and parse_label(text, labels) is None:
        return f"names none of the {len(labels)} labels: {text[:80]!r}"
    kinds = pii_kinds(text)
    if kinds:
        return f"personal data in the answer ({', '.join(kinds)})"
    return None


def clean_answer(text: str, labels: list[str] | None) -> str:
    """The answer the student learns: the label itself for classification (a teacher's
    "The intent is card_arrival." teaches `card_arrival`), else the text, trimmed."""
    if labels:
        label = parse_label(text, labels)
        if label is not None:
            return label
    return text.strip()
