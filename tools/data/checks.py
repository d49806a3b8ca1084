"""Row-level checks on canonical examples. Pure functions: text in, findings out."""

from __future__ import annotations

import re
from dataclasses import dataclass

ERROR, WARNING = "error", "warning"

# name -> (severity, what is done about it)
CHECKS: dict[str, tuple[str, str]] = {
    "unparsable": (ERROR, "dropped (written to rejected.jsonl); the rest of the file is read"),
    "invalid_utf8": (ERROR, "dropped (written to rejected.jsonl); re-save the file as UTF-8"),
    "missing_field": (ERROR, "dropped (written to rejected.jsonl)"),
    "bad_role": (ERROR, "dropped: roles must be system, user, assistant or tool"),
    "role_order": (ERROR, "dropped: user/assistant must alternate and end with assistant"),
    "empty_field": (ERROR, "dropped: a message has no content"),
    "short_output": (WARNING, "kept: check these answers are meant to be this short"),
    "control_chars": (WARNING, "fixed: control characters stripped"),
    "mojibake": (WARNING, "kept: text looks double-encoded (e.g. 'Ã©' for 'é'); fix upstream"),
    "pii": (WARNING, "kept: likely personal data or secrets; remove before training"),
    "exact_duplicate": (WARNING, "dropped: the first copy is kept"),
    "near_duplicate": (WARNING, "dropped: the first of each near-duplicate group is kept"),
    "too_long": (WARNING, "dropped (or truncated with --truncate) to the max length"),
    "answer_truncated": (ERROR, "dropped: the answer would be cut away by the max length"),
    "loss_mask": (ERROR, "fix the chat template or max length: loss would miss the answer"),
    "label_imbalance": (WARNING, "kept: consider rebalancing or more data for rare labels"),
    "leakage": (ERROR, "dropped from train: the same or a near-same prompt is in the test set"),
    "too_little_data": (WARNING, "kept: few-shot prompting may do as well; add data"),
    "prompt_only": (ERROR, "not trainable: the rows have no answers (evaluation data?)"),
}

ROLES = {"system", "user", "assistant", "tool"}
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MOJIBAKE = re.compile(r"(?:Ã[\x80-\xbf¡-¿]|â€[™œ\x9d˜“”¢]|Â[\xa0-\xbf])")
EMAIL = re.compile(r"\b[\w.+-]+@[\w-]+\.[\w.-]*[a-z]{2,}\b", re.I)
PHONE = re.compile(
    r"(?<![\w.])(?:\+\d{1,3}[\s.-]?)?(?:\(\d{2,4}\)[\s.-]?|\d{2,4}[\s.-])\d{3,4}[\s.-]\d{3,4}(?![\w.])"
)
CARD = re.compile(r"\b(?:\d[ -]?){12,18}\d\b")
SECRET = re.compile(
    r"(?:AKIA[0-9A-Z]{16}|sk-[A-Za-z0-9_-]{20,}|ghp_[A-Za-z0-9]{30,}|xox[abp]-[A-Za-z0-9-]{10,}"
    r"|-----BEGIN [A-Z ]*PRIVATE KEY-----)"
)
MIN_ANSWER_CHARS = 2


@dataclass(slots=True)
class Finding:
    check: str
    field: str = ""
    detail: str = ""


def luhn_ok(digits: str) -> bool:
    total, alt = 0, False
    for ch in reversed(digits):
        d = ord(ch) - 48
        if alt:
            d = d * 2 - 9 if d > 4 else d * 2
        total += d
        alt = not alt
    return total % 10 == 0


def pii_kinds(text: str) -> list[str]:
    kinds = []
    if "@" in text and EMAIL.search(text):
        kinds.append("email")
    if SECRET.search(text):
        kinds.append("secret key")
    for m in CARD.finditer(text):
        digits = re.sub(r"\D", "", m.group())
        if 13 <= len(digits) <= 19 and luhn_ok(digits):
            kinds.append("card number")
            break
    if PHONE.search(CARD.sub(" ", text)):  # a card number is not also a phone number
        kinds.append("phone number")
    return kinds


def structure_problem(messages: list[dict]) -> Finding | None:
    """The first structural problem of a chat example (roles, order, empty content)."""
    for i, m in enumerate(messages):
        if m["role"] not in ROLES:
            return Finding("bad_role", f"messages[{i}].role", repr(m["role"]))
        if not m["content"].strip() and not m.get("tool_calls"):
            return Finding("empty_field", f"messages[{i}].content")
    turns = [m for m in messages if m["role"] != "system"]
    if any(m["role"] == "system" for m in messages[1:]):
        return Finding("role_order", "messages", "a system message after the first turn")
    if not turns or turns[0]["role"] != "user":
        return Finding("role_order", "messages", "the first turn is not from the user")
    prev = None
    for m in turns:
        role = m["role"]
        if role == prev and role != "tool":
            return Finding("role_order", "messages", f"two '{role}' turns in a row")
        prev = role
    if turns[-1]["role"] != "assistant":
        return Finding("role_order", "messages", "no assistant answer at the end")
    return None


# Cheap scans that every finding below needs to pass first: most rows match none, so they
# cost a few substring tests and two simple regex scans instead of five regexes a message.
HINTS = ("@", "Ã", "Â", "â€", "AKIA", "sk-", "ghp_", "xox", "-----BEGIN")
NEEDS_A_LOOK = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]|\d{3}[\s.-]?\d{3}")


def _suspicious(text: str) -> bool:
    return any(h in text for h in HINTS) or NEEDS_A_LOOK.search(text) is not None


def text_findings(example: dict) -> list[Finding]:
    """Encoding and PII findings over every message of an example."""
    if not _suspicious("\n".join(m["content"] for _, m in _all_messages(example))):
        return []
    out = []
    for i, m in _all_messages(example):
        content = m["content"]
        if CONTROL.search(content):
            out.append(Finding("control_chars", f"{i}.content"))
        if ("Ã" in content or "â€" in content or "Â" in content) and MOJIBAKE.search(content):
            out.append(Finding("mojibake", f"{i}.content"))
        kinds = pii_kinds(content)
        if kinds:
            out.append(Finding("pii", f"{i}.content", ", ".join(kinds)))
    return out


def _all_messages(example: dict):
    if "messages" in example:
        for i, m in enumerate(example["messages"]):
            yield f"messages[{i}]", m
    else:
        for side in ("prompt", "chosen", "rejected"):
            for i, m in enumerate(example.get(side, [])):
                yield f"{side}[{i}]", m


def strip_control(example: dict) -> dict:
    for _, m in _all_messages(example):
        m["content"] = CONTROL.sub("", m["content"])
    return example


def preference_problem(ex: dict) -> Finding | None:
    for side in ("chosen", "rejected"):
        msgs = ex[side]
        if not msgs or not "".join(m["content"] for m in msgs).strip():
            return Finding("empty_field", side)
        if msgs[-1]["role"] != "assistant":
            return Finding("role_order", side, "the last turn is not the assistant's")
    if not ex["prompt"]:
        return Finding("missing_field", "prompt", "no shared prompt before the answers")
    return None


def answer_text(example: dict) -> str:
    if "messages" in example:
        return example["messages"][-1]["content"]
    return example["chosen"][-1]["content"]


def prompt_text(example: dict) -> str:
    """The user side of an example: what leakage checks and split grouping compare."""
    msgs = example["prompt"] if "prompt" in example else example["messages"]
    return "\n".join(m["content"] for m in msgs if m["role"] == "user")


def full_text(example: dict) -> str:
    """What near-duplicate detection compares: every turn but the system prompt, which is
    often shared by all rows and would make every pair look alike."""
    return "\n".join(m["content"] for _, m in _all_messages(example) if m["role"] != "system")
