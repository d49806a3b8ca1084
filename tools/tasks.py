"""Task understanding: what kind of fine-tuning task a goal and its data describe.

Rules only (an LLM may refine the answer later): the data's shape decides when it is
unambiguous (preference pairs, label answers, code, JSON), the goal's words otherwise.
"""

from __future__ import annotations

import re

from ftagent.tools.data.facts import DataFacts
from pydantic import BaseModel

TASK_TYPES = (
    "classification",
    "extraction",
    "summarization",
    "code",
    "style",
    "domain_knowledge",
    "chat",
    "preference",
    "distillation",
)

# Goal words per task type, checked as word prefixes ("classif" matches "classify").
GOAL_WORDS: dict[str, tuple[str, ...]] = {
    "preference": ("prefer", "dpo", "rlhf", "align", "harmless", "chosen", "reward", "safer"),
    "distillation": ("distil", "teacher", "student", "compress", "mimic"),
    "classification": (
        "classif", "intent", "label", "categor", "sentiment", "route", "routing", "triage",
        "detect", "moderat", "tag", "spam", "topic",
    ),
    "extraction": ("extract", "parse", "entit", "ner", "field", "json", "structur", "slot"),
    "summarization": ("summar", "tl;dr", "digest", "condens", "abstract", "recap"),
    "code": ("code", "coding", "sql", "python", "program", "function", "javascript", "bash"),
    "style": ("tone", "style", "voice", "brand", "persona", "format", "rewrite", "polite"),
    "domain_knowledge": (
        "faq", "domain", "knowledge", "medical", "legal", "financ", "document", "policy",
        "product", "manual", "company", "internal",
    ),
    "chat": ("chat", "assistant", "conversation", "support", "agent", "bot", "dialog", "help"),
}
# When several match, the more specific task wins (listed first).
PRIORITY = [t for t in GOAL_WORDS]

TEACHER = re.compile(
    r"(?:teacher|distil\w*(?:\s+(?:from|of))?|from)\s+[`'\"]?([\w./:-]*(?:gpt|claude|llama|qwen|"
    r"mistral|gemini|deepseek|70b|72b|405b)[\w./:-]*)",
    re.I,
)


class TaskUnderstanding(BaseModel):
    task_type: str
    secondary: list[str] = []
    reasons: list[str] = []
    teacher: str | None = None


def goal_matches(goal: str) -> list[str]:
    words = re.findall(r"[a-z0-9;.]+", goal.lower())
    return [t for t in PRIORITY if any(w.startswith(k) for w in words for k in GOAL_WORDS[t])]


def find_teacher(goal: str) -> str | None:
    m = TEACHER.search(goal)
    return m.group(1) if m else None


def classify_task(goal: str, data: DataFacts, teacher: str | None = None) -> TaskUnderstanding:
    said = goal_matches(goal)
    teacher = teacher or find_teacher(goal)
    reasons: list[str] = []

    def done(task: str, why: str) -> TaskUnderstanding:
        reasons.append(why)
        if said:
            reasons.append(f"goal words point to: {', '.join(said)}")
        return TaskUnderstanding(
            task_type=task, secondary=[t for t in said if t != task], reasons=reasons,
            teacher=teacher,
        )

    if data.kind == "preference":
        return done("preference", f"the data holds {data.n_examples:,} chosen/rejected pairs")
    if teacher and (data.kind == "prompts" or "distillation" in said):
        return done("distillation", f"a teacher model is named ({teacher})")
    if data.kind in ("classification", "multiple_choice") or data.n_labels:
        n = f"{data.n_labels} distinct labels" if data.n_labels else "multiple-choice answers"
        return done("classification", f"answers are labels ({n})")
    if data.code_share >= 0.5:
        return done("code", f"{data.code_share:.0%} of answers are code")
    if data.json_share >= 0.5:
        return done("extraction", f"{data.json_share:.0%} of answers are JSON")
    if said:
        task = said[0]
        if task in ("preference", "distillation"):  # the data does not have that shape
            task = next((t for t in said[1:] if t not in ("preference", "distillation")), "chat")
        shape = (
            f"{data.multi_turn_share:.0%} multi-turn"
            if data.multi_turn_share
            else f"single-turn, answers ~{data.answer_tokens_p50} tokens"
        )
        reasons.append(f"free-text answers ({shape}); the goal decides the task")
        return TaskUnderstanding(
            task_type=task, secondary=[t for t in said if t != task], reasons=reasons,
            teacher=teacher,
        )
    if data.multi_turn_share >= 0.3:
        return done("chat", f"{data.multi_turn_share:.0%} of examples are multi-turn")
    if data.answer_tokens_p50 and data.prompt_tokens_p50 > 4 * data.answer_tokens_p50 > 0:
        return done("summarization", "answers are much shorter than their prompts")
    return done("chat", "free-text answers and no more specific signal")
