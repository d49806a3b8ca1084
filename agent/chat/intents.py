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
    # stop | status | list_runs | resume | explain | diagnose | help | question | undo
    args: dict[str, Any] = Field(default_factory=dict)


# Actions that change something (a setting, a gate, a run); a question is never one.
CHANGING = frozenset({"start_workflow", "set_model", "set_data", "set_config", "approve",
                      "reject", "stop", "resume", "undo"})

# A question asks; it never changes anything. Opening words that ask, and phrases that ask
# wherever they stand ("stop using 3 epochs, what happens if I use 1?").
QUESTION_START = re.compile(
    r"^(?:how|what|why|when|where|which|who|whom|whose|should|shall|would|could|might|"
    r"is|are|was|were|isn'?t|aren'?t|wouldn'?t|shouldn'?t|won'?t|doesn'?t|"
    r"do\s+(?:i|we|you|they|the|my|our)|"
    r"(?:does|did|can|will|may)\s+(?:i|we|you|it|they|this|that|the|a|my|our|\d)|"
    r"any\s+(?:idea|reason|chance|advice)|wondering|i\s+wonder)\b", re.IGNORECASE)
QUESTION_PHRASE = re.compile(
    r"\b(?:what\s+happens|what\s+if|what\s+about|how\s+about|how\s+(?:much|many|long|does|do|"
    r"would|will)|should\s+(?:i|we)|do\s+(?:i|we)\s+need|would\s+(?:it|that|this|a|an|"
    r"the|\d)|is\s+it\s+(?:worth|ok|okay|better|safe|fine|wise)|i\s+wonder|wondering|"
    r"tell\s+me\s+(?:whether|if)|not\s+sure\s+(?:if|whether)|any\s+(?:idea|advice))\b",
    re.IGNORECASE)


CONFIRM = re.compile(r"^(?:y|yes|yep|yeah|ok(?:ay)?|sure|confirm(?:ed)?|do it|please do|"
                     r"go ahead|yes,? please|yes,? do it)[.! ]*$", re.IGNORECASE)
DECLINE = re.compile(r"^(?:n|no|nope|no,? thanks|don'?t|drop it|never ?mind|leave it)[.! ]*$",
                     re.IGNORECASE)


def is_question(text: str) -> bool:
    t = " ".join(text.strip().split())
    return t.endswith("?") or bool(QUESTION_START.match(t) or QUESTION_PHRASE.search(t))


def _num(text: str) -> float | int:
    v = float(text)
    return int(v) if v.is_integer() and "e" not in text.lower() and "." not in text else v


# How a setting is joined to its value: "rank 32", "rank=32", "rank of 32", "rank up to 32".
_TO = r"\s*(?:=|:|\s(?:of|to|at|is|up\s+to|down\s+to)\s)?\s*"
# "use rank 32", "learning rate 1e-4", ...: (pattern, config key)
CONFIG_PHRASES: list[tuple[re.Pattern, str]] = [
    (re.compile(rf"\b(?:lora[\s_]*|adapter\s+)?(?:rank|r){_TO}(\d+)\b"), "lora.r"),
    (re.compile(rf"\b(?:lora[\s_]*)?alpha{_TO}(\d+)\b"), "lora.alpha"),
    (re.compile(rf"\b(?:lora[\s_]*)?dropout{_TO}(\d*\.?\d+)\b"), "lora.dropout"),
    (re.compile(rf"\b(?:learning[\s_-]*rate|lr){_TO}(\d*\.?\d+(?:e-?\d+)?)\b"),
     "learning_rate"),
    (re.compile(r"\b(\d*\.?\d+)\s+epochs?\b"), "num_epochs"),
    (re.compile(rf"\b(?:num[\s_-]*)?epochs?{_TO}(\d*\.?\d+)\b"), "num_epochs"),
    (re.compile(rf"\bbatch[\s_-]*size{_TO}(\d+)\b"), "batch_size"),
    (re.compile(rf"\b(?:max(?:imum)?[\s_-]*(?:sequence[\s_-]*|seq[\s_-]*)?length|"
                rf"sequence[\s_-]*length|context(?:[\s_-]*length)?){_TO}(\d+)\b"),
     "max_length"),
    (re.compile(r"\b(\d+)\s+(?:training\s+|optimi[sz]er\s+)?steps\b"), "max_steps"),
    (re.compile(rf"\bmax[\s_-]*steps{_TO}(\d+)\b"), "max_steps"),
]
NUMBER_WORDS = {"one": "1", "two": "2", "three": "3", "four": "4", "five": "5", "six": "6",
                "seven": "7", "eight": "8", "nine": "9", "ten": "10", "a single": "1"}
METHODS = {"qlora": "qlora", "4-bit": "qlora", "4bit": "qlora", "lora": "lora",
           "full fine-tuning": "full", "full finetuning": "full", "full fine tuning": "full",
           "full fine-tune": "full", "full finetune": "full", "full fine tune": "full",
           "dpo": "dpo", "dora": "dora"}
METHOD_VERB = (r"(?:use|switch\s+to|try|with|go\s+with|do\s+(?:a\s+)?|enable|turn\s+on|"
               r"(?:change|set|switch)\s+(?:the\s+)?method\s+to|method(?:\s*=|:)?)")
_KEY_VALUE = re.compile(r"^(?:set|change)?\s*([a-z_]+(?:\.[a-z_]+)?)\s*(?:=|to)\s*(\S+)$")
KEY_ALIASES = {"lora_alpha": "lora.alpha", "lora_r": "lora.r", "lora_dropout": "lora.dropout",
               "lora_rank": "lora.r", "epochs": "num_epochs", "lr": "learning_rate"}

APPROVE = re.compile(
    r"^(?:yes|yep|yeah|ok(?:ay)?|sure|approve[ds]?|approved|lgtm|sounds good|looks good|"
    r"go ahead|go on|continue|proceed|ship it|do it|accept(?:ed)?|let'?s go|perfect|great|"
    r"i (?:approve|accept))"
    r"\b(?!.*\b(?:but|not|don'?t|no)\b)", re.IGNORECASE)
REJECT = re.compile(r"^(?:no|nope|reject(?:ed)?|decline|not good|that'?s wrong|"
                    r"i don'?t like)\b[\s,:.!-]*(?P<reason>.*)$", re.IGNORECASE)
STOP = re.compile(r"^(?:please\s+)?(?:stop|cancel|abort|quit|halt|kill)\b(?:\s+(?:the\s+)?"
                  r"(?:current\s+)?(?:run|training|workflow|it|this|everything)"
                  r"(?:\s+(?:job|now))*)?\s*(?:[.!]*$|[,;:-]\s*\D*$)", re.IGNORECASE)
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
MODEL = re.compile(
    r"(?:\b(?:use|switch\s+to|try|with|go\s+with)\s+(?:the\s+)?(?:local\s+)?"
    r"(?:base\s+)?(?:model\s+)?(?:at\s+|in\s+)?|"
    r"\b(?:change|switch|set)\s+(?:the\s+)?(?:base\s+)?model\s+to\s+|^base\s+model\s*[:=]\s*)"
    r"(?P<m>\.{0,2}/[\w./-]+|[\w.-]+/[\w.-]+|smollm2[\w.-]*|qwen[\w.-]*|llama[\w.-]*|"
    r"mistral[\w.-]*|phi[\w.-]*|gemma[\w.-]*)"
    r"(?:\s+(?:model|instead|as\s+(?:the\s+)?base(?:\s+model)?))*\s*[.!]*$", re.IGNORECASE)


def parse(text: str) -> Intent | None:
    """The action a message asks for, or None when it is not clearly an action."""
    t = " ".join(text.strip().split())
    low = t.lower().rstrip("?.! ")
    if not low:
        return None
    if low in ("help", "what can you do", "commands", "?"):
        return Intent(action="help")
    question = is_question(t)
    if STOP.match(low) and not question:
        return Intent(action="stop")
    if re.search(r"\b(status|progress|where are we|what'?s happening|how(?:'s| is) "
                 r"(?:it|the run|training) going)\b", low) or re.search(
                     r"^(?:is|has) (?:it|the run|the training|training) (?:finished|done|"
                     r"over|complete)", low):
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
    if re.match(r"^(?:undo|revert|undo (?:that|the last change)|put it back)$", low):
        return Intent(action="undo")
    if question:
        return Intent(action="question", args={"offer": _offer(low)})
    if (m := REJECT.match(t)) and not START.search(t):
        reason = m.group("reason").strip() or "rejected in chat"
        return Intent(action="reject", args={"reason": reason, **_gate_in(low)})
    if APPROVE.match(low):
        return Intent(action="approve", args=_gate_in(low))
    path = _PATH.search(t)
    changes = config_changes(low)
    # "train on x.csv", "train for 5 epochs", "make it one epoch": no model named
    bare_verb = not re.search(rf"\b{NOUN}\b", _PATH.sub(" ", low))
    if bare_verb and changes and not path:
        return Intent(action="set_config", args={"changes": changes})
    if bare_verb and path and re.match(r"^(?:train|fine[\s-]?tune)\s+on\s", low):
        return Intent(action="set_data", args={"data_path": path.group("p")})
    if re.match(r"^(?:new|start(?:\s+a)?(?:\s+new)?)\s+(?:fine[\s-]?tun\w*\s+)?"
                r"(?:project|run|job|workflow)\b", low):
        return _start(t)
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


def _offer(low: str) -> dict[str, Any]:
    """The one change a question is about, to offer ("Want me to set 1 epoch?"): none when
    the question names more than one value, since it is then unclear which is meant."""
    if len(re.findall(r"\d*\.?\d+(?:e-?\d+)?", low)) > 1:
        return {}
    changes = config_changes(low)
    return changes if len(changes) == 1 else {}


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
        key = KEY_ALIASES.get(key, key)
        if "." in key or "_" in key:
            import yaml

            try:
                return {key: _num(raw)}
            except ValueError:  # true/false, a method name, ...
                return {key: yaml.safe_load(raw)}
    for word, digit in NUMBER_WORDS.items():
        low = re.sub(rf"\b{word}\b(?=\s+(?:epochs?|steps?)\b)", digit, low)
    out: dict[str, Any] = {}
    for pattern, key in CONFIG_PHRASES:
        if key in out:
            continue
        if m := pattern.search(low):
            out[key] = _num(m.group(1))
    for word, method in METHODS.items():
        if re.search(rf"\b{METHOD_VERB}\s*{re.escape(word)}\b", low):
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
