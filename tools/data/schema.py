"""Detect a dataset's schema and turn each record into the canonical forms:

- chat (SFT): {"messages": [{"role": "system"|"user"|"assistant", "content": str,
  "tool_calls"?: [...]}, ...]}
- preference (DPO): {"prompt": [messages], "chosen": [assistant message],
  "rejected": [assistant message]}
- classification rows become chat after the label set is known (see `label_prompt`).

Pure functions over dicts: no I/O.
"""

from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

SCHEMAS = (
    "messages",
    "chat_prompts",
    "sharegpt",
    "dialogue_turns",
    "preference",
    "alpaca",
    "self_instruct",
    "prompt_completion",
    "classification",
    "multiple_choice",
    "prompt_only",
)

# Aliases for the two sides of a prompt/answer pair, best first.
PROMPT_KEYS = ("prompt", "question", "query", "instruction", "input", "goal", "text")
ANSWER_KEYS = ("completion", "answer", "response", "output", "target_text", "reply")
TEXT_KEYS = ("text", "sentence", "utterance", "query", "prompt", "question", "content", "review")
LABEL_KEYS = ("label", "category", "intent", "class", "labels")
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "chatgpt": "assistant",
    "system": "system",
    "tool": "tool",
    "function": "tool",
}
SPEAKER_ROLES = {"USER": "user", "SYSTEM": "assistant", "ASSISTANT": "assistant"}
HH_TURN = re.compile(r"\n\n(Human|Assistant): ")


class RowError(ValueError):
    """A record that cannot be converted; `field` names the offending field."""

    def __init__(self, field: str, message: str):
        self.field = field
        super().__init__(message)


@dataclass
class Schema:
    name: str
    columns: dict[str, str] = field(default_factory=dict)  # canonical role -> source column
    kind: str = "chat"  # chat | preference | classification | multiple_choice | prompts

    def describe(self) -> str:
        cols = ", ".join(f"{k} <- {v}" for k, v in self.columns.items())
        return f"{self.name}" + (f" ({cols})" if cols else "")


def _first(keys: tuple[str, ...], row: dict, skip: set[str] = frozenset()) -> str | None:
    lowered = {k.lower(): k for k in row}
    for k in keys:
        if k in lowered and lowered[k] not in skip:
            return lowered[k]
    return None


def guess_schema(row: dict) -> Schema | None:
    """The schema one record looks like, or None."""
    if isinstance(row.get("messages"), list):
        if _unanswered(row["messages"]):  # a conversation waiting for its answer
            return Schema("chat_prompts", kind="prompts")
        return Schema("messages")
    if isinstance(row.get("conversations"), list):
        return Schema("sharegpt", {"messages": "conversations"})
    if isinstance(row.get("turns"), list):
        return Schema("dialogue_turns", {"messages": "turns"})
    if "chosen" in row and "rejected" in row:
        cols = {"chosen": "chosen", "rejected": "rejected"}
        if "prompt" in row:
            cols["prompt"] = "prompt"
        return Schema("preference", cols, kind="preference")
    if "instruction" in row and isinstance(row.get("instances"), list):
        return Schema("self_instruct", {"prompt": "instruction", "completion": "instances"})
    if "instruction" in row and ("output" in row or "response" in row):
        out = "output" if "output" in row else "response"
        cols = {"prompt": "instruction", "completion": out}
        if "input" in row:
            cols["input"] = "input"
        return Schema("alpaca", cols)
    if isinstance(row.get("question"), dict) and "answerKey" in row:
        return Schema(
            "multiple_choice",
            {"prompt": "question", "completion": "answerKey"},
            kind="multiple_choice",
        )
    if "sol1" in row and "sol2" in row and "label" in row:
        return Schema(
            "multiple_choice", {"prompt": "goal", "completion": "label"}, kind="multiple_choice"
        )
    label = _first(LABEL_KEYS, row)
    text = _first(TEXT_KEYS, row, skip={label} if label else set())
    if label and text and _scalar(row[label]):
        return Schema("classification", {"text": text, "label": label}, kind="classification")
    prompt = _first(PROMPT_KEYS, row)
    answer = _first(ANSWER_KEYS, row, skip={prompt} if prompt else set())
    if prompt and answer:
        return Schema("prompt_completion", {"prompt": prompt, "completion": answer})
    if prompt:
        return Schema("prompt_only", {"prompt": prompt}, kind="prompts")
    return None


def _unanswered(messages: list) -> bool:
    """Chat rows that end with the user and hold no answer: prompts (for a teacher), not
    broken chat examples."""
    roles = [m.get("role") for m in messages if isinstance(m, dict)]
    return bool(roles) and roles[-1] == "user" and "assistant" not in roles


def _scalar(v) -> bool:
    return isinstance(v, (str, int, bool)) and len(str(v).split()) <= 6


def detect_schema(rows: list[dict]) -> tuple[Schema | None, dict[str, int]]:
    """The most common schema over a sample, and how often each was seen."""
    votes: Counter[str] = Counter()
    first: dict[str, Schema] = {}
    for row in rows:
        s = guess_schema(row)
        key = s.describe() if s else "unknown"
        votes[key] += 1
        if s and key not in first:
            first[key] = s
    known = [(n, k) for k, n in votes.most_common() if k in first]
    return (first[known[0][1]] if known else None), dict(votes)


REQUIRED_COLUMNS = {
    "classification": ("text", "label"),
    "prompt_completion": ("prompt", "completion"),
    "prompt_only": ("prompt",),
}


def schema_from_override(
    name: str, columns: dict[str, str] | None = None, sample: list[dict] | None = None
) -> Schema:
    """A schema the user named; columns not given are taken from what detection found."""
    if name not in SCHEMAS:
        raise ValueError(f"unknown schema '{name}'; choose one of: {', '.join(SCHEMAS)}")
    kind = {
        "preference": "preference",
        "classification": "classification",
        "prompt_only": "prompts",
        "chat_prompts": "prompts",
        "multiple_choice": "multiple_choice",
    }.get(name, "chat")
    cols: dict[str, str] = {}
    for row in (sample or [])[:1]:
        if name == "classification":
            label = _first(LABEL_KEYS, row)
            text = _first(TEXT_KEYS, row, skip={label} if label else set())
            cols = {k: v for k, v in (("text", text), ("label", label)) if v}
        elif name in ("prompt_completion", "prompt_only"):
            prompt = _first(PROMPT_KEYS, row)
            answer = _first(ANSWER_KEYS, row, skip={prompt} if prompt else set())
            cols = {k: v for k, v in (("prompt", prompt), ("completion", answer)) if v}
        else:
            guessed = guess_schema(row)
            cols = dict(guessed.columns) if guessed and guessed.name == name else {}
    cols.update(columns or {})
    missing = [c for c in REQUIRED_COLUMNS.get(name, ()) if c not in cols]
    if missing:
        raise ValueError(
            f"schema '{name}' needs the column(s) {', '.join(missing)}: pass "
            + " ".join(f"--column {c}=FIELD" for c in missing)
        )
    return Schema(name, cols, kind=kind)


def _text(row: dict, key: str) -> str:
    if key not in row or row[key] is None:
        raise RowError(key, "missing")
    value = row[key]
    if isinstance(value, (int, float, bool)):
        return str(value)
    if not isinstance(value, str):
        raise RowError(key, f"expected text, got {type(value).__name__}")
    return value


def _messages(items, key: str, role_of) -> list[dict]:
    if not isinstance(items, list):
        raise RowError(key, f"expected a list of messages, got {type(items).__name__}")
    out = []
    for i, m in enumerate(items):
        if not isinstance(m, dict):
            raise RowError(f"{key}[{i}]", f"expected an object, got {type(m).__name__}")
        role, content = role_of(m, key, i)
        if content is None:
            content = ""
        if not isinstance(content, str):
            raise RowError(f"{key}[{i}].content", f"expected text, got {type(content).__name__}")
        msg = {"role": role, "content": content}
        if m.get("tool_calls"):
            msg["tool_calls"] = m["tool_calls"]
        out.append(msg)
    return out


# role_of(message, key, index): the error location is only formatted when there is one,
# since this runs for every message of every row.
def _chat_role(m: dict, key: str, i: int):
    role = m.get("role")
    if role is None:
        raise RowError(f"{key}[{i}].role", "missing")
    return role if type(role) is str else str(role), m.get("content")


def _sharegpt_role(m: dict, key: str, i: int):
    who = str(m.get("from", "")).lower()
    if who not in SHAREGPT_ROLES:
        raise RowError(f"{key}[{i}].from", f"unknown speaker {m.get('from')!r}")
    return SHAREGPT_ROLES[who], m.get("value")


def _speaker_role(m: dict, key: str, i: int):
    who = str(m.get("speaker", "")).upper()
    if who not in SPEAKER_ROLES:
        raise RowError(f"{key}[{i}].speaker", f"unknown speaker {m.get('speaker')!r}")
    return SPEAKER_ROLES[who], m.get("utterance")


def parse_hh(text: str, key: str) -> list[dict]:
    """Anthropic HH transcripts: "\\n\\nHuman: ...\\n\\nAssistant: ..." to messages."""
    parts = HH_TURN.split(text)
    if len(parts) < 3:
        raise RowError(key, "expected a transcript of '\\n\\nHuman:' / '\\n\\nAssistant:' turns")
    return [
        {"role": "user" if who == "Human" else "assistant", "content": body.strip()}
        for who, body in zip(parts[1::2], parts[2::2], strict=True)
    ]


def _pref_side(value, key: str) -> list[dict]:
    if isinstance(value, list):
        return _messages(value, key, _chat_role)
    if isinstance(value, str):
        return (
            parse_hh(value, key)
            if "\n\nHuman: " in value
            else [{"role": "assistant", "content": value}]
        )
    raise RowError(key, f"expected text or messages, got {type(value).__name__}")


def to_preference(row: dict, cols: dict) -> dict:
    chosen = _pref_side(row.get(cols.get("chosen", "chosen")), cols.get("chosen", "chosen"))
    rejected = _pref_side(row.get(cols.get("rejected", "rejected")), "rejected")
    if "prompt" in cols:
        p = row.get(cols["prompt"])
        prompt = (
            _messages(p, cols["prompt"], _chat_role)
            if isinstance(p, list)
            else [{"role": "user", "content": _text(row, cols["prompt"])}]
        )
    else:  # HH style: the shared turns are the prompt, the last turn differs
        n = 0
        while n < min(len(chosen), len(rejected)) - 1 and chosen[n] == rejected[n]:
            n += 1
        prompt, chosen, rejected = chosen[:n], chosen[n:], rejected[n:]
    return {"prompt": prompt, "chosen": chosen, "rejected": rejected}


def _mc_prompt(row: dict, schema_cols: dict) -> tuple[str, str]:
    if "answerKey" in row:  # ARC
        q = row["question"]
        opts = "\n".join(f"{c['label']}. {c['text']}" for c in q.get("choices", []))
        return f"{q.get('stem', '')}\n{opts}\nAnswer with the letter.", str(row["answerKey"])
    opts = f"A. {_text(row, 'sol1')}\nB. {_text(row, 'sol2')}"  # PIQA
    return (
        f"{_text(row, 'goal')}\n{opts}\nAnswer with the letter.",
        "AB"[int(row["label"])] if str(row["label"]) in ("0", "1") else str(row["label"]),
    )


def convert(row: dict, schema: Schema) -> list[dict]:
    """Canonical example(s) for one record (self-instruct rows hold several)."""
    cols, name = schema.columns, schema.name
    if name in ("messages", "chat_prompts"):
        return [{"messages": _messages(row.get("messages"), "messages", _chat_role)}]
    if name == "sharegpt":
        key = cols.get("messages", "conversations")
        return [{"messages": _messages(row.get(key), key, _sharegpt_role)}]
    if name == "dialogue_turns":
        key = cols.get("messages", "turns")
        return [{"messages": _messages(row.get(key), key, _speaker_role)}]
    if name == "preference":
        return [to_preference(row, cols)]
    if name == "self_instruct":
        instr = _text(row, cols.get("prompt", "instruction"))
        items = row.get("instances")
        if not isinstance(items, list) or not items:
            raise RowError("instances", "expected a non-empty list of {input, output}")
        out = []
        for i, inst in enumerate(items):
            if not isinstance(inst, dict):
                raise RowError(f"instances[{i}]", "expected an object")
            extra = inst.get("input") or ""
            user = f"{instr}\n\n{extra}" if str(extra).strip() else instr
            out.append(_pair(user, inst.get("output"), f"instances[{i}].output"))
        return out
    if name == "alpaca":
        prompt = _text(row, cols.get("prompt", "instruction"))
        extra = row.get(cols.get("input", "input")) or ""
        user = f"{prompt}\n\n{extra}" if str(extra).strip() else prompt
        ex = _pair(
            user, row.get(cols.get("completion", "output")), cols.get("completion", "output")
        )
        if row.get("system"):
            ex["messages"].insert(0, {"role": "system", "content": str(row["system"])})
        return [ex]
    if name == "multiple_choice":
        prompt, answer = _mc_prompt(row, cols)
        return [_pair(prompt, answer, cols.get("completion", "answer"))]
    if name == "classification":
        return [_pair(_text(row, cols["text"]), _text(row, cols["label"]), cols["label"])]
    if name == "prompt_completion":
        return [_pair(_text(row, cols["prompt"]), row.get(cols["completion"]), cols["completion"])]
    if name == "prompt_only":
        return [{"messages": [{"role": "user", "content": _text(row, cols["prompt"])}]}]
    raise ValueError(f"unknown schema {name}")


def _pair(user: str, answer, answer_field: str) -> dict:
    if answer is None:
        raise RowError(answer_field, "missing")
    if not isinstance(answer, (str, int, float, bool)):
        raise RowError(answer_field, f"expected text, got {type(answer).__name__}")
    return {
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": str(answer)},
        ]
    }


def label_prompt(labels: list[str]) -> str:
    """The system prompt that turns text-label rows into a chat task."""
    return (
        "Classify the user's message. Reply with exactly one label from: " + ", ".join(labels) + "."
    )
