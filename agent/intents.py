"""A deterministic parser for the common things people type to the assistant, so every
workflow action stays reachable with no LLM configured.

It recognises only clear phrasings and returns None otherwise: a wrong action is worse
than a question answered from the knowledge base or passed to an LLM.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from pydantic import BaseModel, Field

GATES = ("strategy", "dataset", "training", "evaluation", "safety", "deployment")
DATA_EXT = r"(?:jsonl|json|csv|tsv|parquet|txt)"
_PATH = re.compile(rf"""(?P<q>["']?)(?P<p>(?:~|\.{{1,2}}|/)?[\w./~-]*\w\.{DATA_EXT})(?P=q)""",
                   re.IGNORECASE)
_RUN_ID = re.compile(r"\b(\d{8}-\d{6}(?:-[\w-]+)?|run-[\w-]+)\b")


class Intent(BaseModel):
    action: str  # start_workflow | set_model | set_data | set_config | approve | reject |
    # stop | status | list_runs | resume | explain | diagnose | help
    args: dict[str, Any] = Field(default_factory=dict)


def _num(text: str) -> float | int:
    v = float(text)
    return int(v) if v.is_integer() and "e" not in text.lower() and "." not in text else v


# "use rank 32", "learning rate 1e-4", ...: (pattern, config key, converter)
CONFIG_PHRASES: list[tuple[re.Pattern, str]] = [
    (re.compile(r"\b(?:lora\s+)?(?:rank|r)\s*(?:=|of|to)?\s*(\d+)\b"), "lora.r"),
    (re.compile(r"\b(?:lora\s+)?alpha\s*(?:=|of|to)?\s*(\d+)\b"), "lora.alpha"),
    (re.compile(r"\b(?:lora\s+)?dropout\s*(?:=|of|to)?\s*(\d*\.?\d+)\b"), "lora.dropout"),
    (re.compile(r"\b(?:learning[\s_-]*rate|lr)\s*(?:=|of|to)?\s*(\d*\.?\d+(?:e-?\d+)?)\b"),
     "learning_rate"),
    (re.compile(r"\b(\d*\.?\d+)\s+epochs?\b"), "num_epochs"),
    (re.compile(r"\bepochs?\s*(?:=|of|to)?\s*(\d*\.?\d+)\b"), "num_epochs"),
    (re.compile(r"\bbatch[\s_-]*size\s*(?:=|of|to)?\s*(\d+)\b"), "batch_size"),
    (re.compile(r"\b(?:max[\s_-]*length|context(?: length)?)\s*(?:=|of|to)?\s*(\d+)\b"),
     "max_length"),
    (re.compile(r"\b(\d+)\s+(?:training\s+)?steps\b"), "max_steps"),
    (re.compile(r"\bmax[\s_-]*steps\s*(?:=|of|to)?\s*(\d+)\b"), "max_steps"),
]
METHODS = {"qlora": "qlora", "4-bit": "qlora", "4bit": "qlora", "lora": "lora",
           "full fine-tuning": "full", "full finetuning": "full", "full fine tuning": "full",
           "dpo": "dpo", "dora": "dora"}
_KEY_VALUE = re.compile(r"^(?:set\s+)?([a-z_]+(?:\.[a-z_]+)?)\s*(?:=|to)\s*(\S+)$")

APPROVE = re.compile(
    r"^(?:yes|yep|yeah|ok(?:ay)?|sure|approve[ds]?|approved|lgtm|sounds good|looks good|"
    r"go ahead|go on|continue|proceed|ship it|do it|accept(?:ed)?|let'?s go|perfect|great)"
    r"\b(?!.*\b(?:but|not|don'?t|no)\b)", re.IGNORECASE)
REJECT = re.compile(r"^(?:no|nope|reject(?:ed)?|decline|not good|that'?s wrong|"
                    r"i don'?t like)\b[\s,:.!-]*(?P<reason>.*)$", re.IGNORECASE)
STOP = re.compile(r"^(?:stop|cancel|abort|quit|halt|kill)\b(?:\s+(?:the\s+)?"
                  r"(?:run|training|workflow|it|this|everything))?\s*[.!]*$", re.IGNORECASE)
START = re.compile(
    r"\b(?:fine[\s-]?tune|finetune|train|build|make|create|teach|want|need)\b.*"
    r"\b(?:model|assistant|classifier|bot|llm|lora|adapter|it)\b|"
    r"^\s*(?:fine[\s-]?tune|finetune|train)\b", re.IGNORECASE)
HUB_ID = r"[A-Za-z][\w.-]*/[\w.-]+(?![/\w])"
NOUN = rf"(?:model|assistant|classifier|bot|llm|adapter|smollm[\w.-]*|{HUB_ID})"
_GOAL = (r"(?:for|to|that|which|so it)\s+(?P<goal>.+?)"
         r"(?:\s+(?:using|with|on|from)\s+\S+\.(?:jsonl|json|csv|tsv|parquet)|$)")
GOAL_AFTER_NOUN = re.compile(rf"\b{NOUN}\s+" + _GOAL, re.IGNORECASE)
GOAL_AFTER = re.compile(r"^\s*\w+[\s-]?\w*\s+" + _GOAL, re.IGNORECASE)
MODEL = re.compile(r"\b(?:use|switch to|try|with)\s+(?:the\s+)?(?:model\s+|base\s+model\s+)?"
                   r"(?P<m>[\w.-]+/[\w.-]+|smollm2[\w.-]*|qwen[\w.-]*|llama[\w.-]*|"
                   r"mistral[\w.-]*|phi[\w.-]*|gemma[\w.-]*)(?:\s+(?:model|as (?:the )?base))?"
                   r"\s*[.!]*$", re.IGNORECASE)


def parse(text: str) -> Intent | None:
    """The action a message asks for, or None when it is not clearly an action."""
    t = " ".join(text.strip().split())
    low = t.lower().rstrip("?.! ")
    if not low:
        return None
    if low in ("help", "what can you do", "commands", "?"):
        return Intent(action="help")
    if STOP.match(low):
        return Intent(action="stop")
    if re.search(r"\b(status|progress|where are we|what'?s happening|how(?:'s| is) "
                 r"(?:it|the run|training) going)\b", low):
        return Intent(action="status")
    if re.search(r"\b(?:list|show)\s+(?:all\s+|my\s+)?runs\b|^runs$|which runs", low):
        return Intent(action="list_runs")
    if m := re.search(r"\b(?:resume|continue|reopen|open)\s+(?:run\s+)?(\S+)", t, re.I):
        run = _RUN_ID.search(t)
        if run or m.group(1).lower() not in ("the", "it", "training", "run"):
            if run or low.startswith(("resume", "open", "reopen")):
                return Intent(action="resume", args={"run_id": (run or m).group(1)})
    if re.search(r"\bwhy\b.*\b(loss|accuracy|overfit|diverg|nan|slow|fail|worse|missed|"
                 r"not (?:learning|improving))", low) or re.search(
                     r"\b(diagnose|what went wrong|what'?s wrong)\b", low):
        return Intent(action="diagnose", args={"question": t})
    if m := re.match(r"^(?:explain|what (?:is|are|does)|what'?s|define|meaning of)\s+"
                     r"(?:the\s+|a\s+|an\s+)?(?P<topic>.+?)(?:\s+mean)?$", low):
        return Intent(action="explain", args={"topic": m.group("topic")})
    if (m := REJECT.match(t)) and not START.search(t):
        reason = m.group("reason").strip() or "rejected in chat"
        return Intent(action="reject", args={"reason": reason, **_gate_in(low)})
    if APPROVE.match(low):
        return Intent(action="approve", args=_gate_in(low))
    path = _PATH.search(t)
    changes = config_changes(low)
    bare_verb = not re.search(rf"\b{NOUN}\b|\bit\b", low)  # "train on x.csv", "train for 5 epochs"
    if bare_verb and changes and not path:
        return Intent(action="set_config", args={"changes": changes})
    if bare_verb and path and re.match(r"^(?:train|fine[\s-]?tune)\s+on\s", low):
        return Intent(action="set_data", args={"data_path": path.group("p")})
    if START.search(t) and not re.match(r"^(?:how|what|why|when|should|can|is|does|do)\b",
                                        low):
        return _start(t)
    if path and re.search(r"\b(use|data|dataset|file|with|train on)\b", low):
        return Intent(action="set_data", args={"data_path": path.group("p")})
    if m := MODEL.search(t):
        return Intent(action="set_model", args={"model": m.group("m")})
    if changes:
        return Intent(action="set_config", args={"changes": changes})
    return None


def _gate_in(low: str) -> dict:
    found = [g for g in GATES if g in low]
    return {"gate": found[0]} if found else {}


def _start(t: str) -> Intent:
    args: dict[str, Any] = {}
    if path := _PATH.search(t):
        args["data_path"] = path.group("p")
    if m := GOAL_AFTER_NOUN.search(t) or GOAL_AFTER.search(t):
        goal = m.group("goal").strip(" .,")
        if path:
            goal = goal.replace(path.group(0), "").strip(" .,")
        goal = re.sub(r"\s+(?:using|with|on|from)$", "", goal)
        if goal:
            args["goal"] = goal
    m = re.search(rf"\b(?:using|with|on|fine[\s-]?tune|finetune|train)\s+(?:the\s+)?"
                  rf"(?:model\s+)?({HUB_ID})", t, re.IGNORECASE)
    if m and not re.search(rf"\.{DATA_EXT}$", m.group(1), re.IGNORECASE):
        args["model"] = m.group(1)
    return Intent(action="start_workflow", args=args)


def config_changes(low: str) -> dict[str, Any]:
    """Config edits named in a message: "use rank 32 and lr 1e-4" -> two changes."""
    if m := _KEY_VALUE.match(low):
        key, raw = m.groups()
        if "." in key or "_" in key:
            import yaml

            return {key: yaml.safe_load(raw)}
    out: dict[str, Any] = {}
    for pattern, key in CONFIG_PHRASES:
        if key in out:
            continue
        if m := pattern.search(low):
            out[key] = _num(m.group(1))
    for word, method in METHODS.items():
        if re.search(rf"\b(?:use|switch to|try|with)\s+{re.escape(word)}\b", low):
            if method == "dora":
                out["lora.use_dora"] = True
            else:
                out["method"] = method
            break
    return out


def split_command(text: str) -> list[str]:
    """shlex, tolerant of an unclosed quote (a person typing)."""
    try:
        return shlex.split(text)
    except ValueError:
        return text.split()
