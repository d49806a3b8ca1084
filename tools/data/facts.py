"""The facts about a dataset the planner decides on: size, shape, lengths, answer kind.

Pure: built from canonical examples and a token counter, so scenarios can also state
them directly (evals/planner)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

from pydantic import BaseModel

CODE_HINT = re.compile(r"```|^\s*(def |class |import |SELECT |function |#include)", re.M)


# Fewer shared leading tokens than this are not shared by the trainer (the extra attention
# call costs more than it saves); the same threshold as tools/train/shared_prefix.py.
MIN_SHARED_PREFIX = 16
# ... and a micro-batch is laid out shared only when that saves at least this share of its
# tokens: on bench_chat (SmolLM2's ~30-token default system prompt in front of every row,
# about a tenth of a batch's tokens) sharing ran 14% slower than not sharing, while the
# demo (~60%) and BANKING77 (~89%) gain. 0.25 is a margin above the measured loss, not a
# measured break-even.
MIN_SAVED_SHARE = 0.25


def worth_sharing(saved: float, total: float) -> bool:
    """Whether computing `saved` of `total` tokens once pays for the shared layout."""
    return total > 0 and saved >= MIN_SAVED_SHARE * total


class TokenFacts(BaseModel):
    """The training rows in tokens as the trainer sees them (the model's chat template
    applied): what the memory and time estimates size a run by. Measured by
    `tools.data.tokens.token_facts`; `rough` builds them from the length percentiles when
    only those are known."""

    rows: int = 0  # rows measured (a spread sample of the data)
    mean: float  # tokens per row
    longest: int  # the longest row: the largest micro-batch of a run holds it
    loss_mean: float  # tokens per row that carry loss (the answer)
    loss_longest: int  # tokens of the longest row that carry loss
    # Leading tokens every row shares, ending before the token that predicts the first loss
    # token (a system prompt, a label list); 0 when fewer than MIN_SHARED_PREFIX.
    shared_prefix: int = 0
    measured: bool = True  # False: derived from percentiles, no shared prefix known

    @classmethod
    def rough(cls, typical: int, longest: int, answer: int) -> TokenFacts:
        """From a typical length (p50), the longest row and a typical answer length."""
        typical = max(1, typical)
        longest = max(longest, typical)
        answer = min(max(1, answer), typical)
        return cls(mean=typical, longest=longest, loss_mean=answer,
                   loss_longest=max(answer, longest - typical + answer), measured=False)

    @classmethod
    def worst_case(cls, max_length: int) -> TokenFacts:
        """Every row max_length tokens, all of them loss: when the rows cannot be read."""
        n = max_length
        return cls(mean=n, longest=n, loss_mean=n, loss_longest=n, measured=False)


class DataFacts(BaseModel):
    n_examples: int
    schema_name: str = "messages"  # detected input format
    kind: str = "chat"  # chat | preference | classification | multiple_choice | prompts
    n_labels: int = 0  # distinct answers when the answers are labels
    multi_turn_share: float = 0.0  # examples with more than one user turn
    prompt_tokens_p50: int = 0
    answer_tokens_p50: int = 0
    tokens_p50: int = 0  # whole example, prompt + answer
    tokens_p99: int = 0
    tokens_max: int = 0
    code_share: float = 0.0  # answers that look like code
    json_share: float = 0.0  # answers that parse as a JSON object or list
    tokens_measured: bool = False  # False: lengths are estimated as characters / 4
    examples: list[dict] = []  # a few canonical examples for the few-shot prompt
    # Rows in tokens with the chat template (mean, longest, loss tokens, shared prefix);
    # None when not measured (the estimates then use `token_facts()`'s rough figures).
    tokens: TokenFacts | None = None

    def token_facts(self) -> TokenFacts:
        """The measured token facts, or rough ones from the length percentiles."""
        return self.tokens or TokenFacts.rough(
            self.tokens_p50, self.tokens_max or self.tokens_p99, self.answer_tokens_p50)


def _pct(values: list[int], q: float) -> int:
    if not values:
        return 0
    s = sorted(values)
    return s[min(len(s) - 1, int(q * len(s)))]


def _is_json(text: str) -> bool:
    t = text.strip()
    if not t or t[0] not in "[{":
        return False
    try:
        json.loads(t)
    except ValueError:
        return False
    return True


def _turns(example: dict) -> tuple[str, str, int]:
    msgs = example.get("messages") or example.get("prompt", []) + example.get("chosen", [])
    users = [m["content"] for m in msgs if m["role"] == "user"]
    answer = msgs[-1]["content"] if msgs and msgs[-1]["role"] == "assistant" else ""
    prompt = "\n".join(m["content"] for m in msgs[:-1] if answer) if answer else "\n".join(users)
    return prompt, answer, len(users)


def facts_from_examples(
    examples: list[dict],
    kind: str,
    schema_name: str,
    labels: list[str],
    count_tokens: Callable[[str], int] | None = None,
    n_shown: int = 4,
) -> DataFacts:
    """Facts over canonical examples ({messages} or {prompt, chosen, rejected})."""
    count = count_tokens or (lambda text: max(1, len(text) // 4))
    prompts, answers, totals = [], [], []
    multi = code = js = 0
    for ex in examples:
        prompt, answer, n_users = _turns(ex)
        p, a = count(prompt), count(answer) if answer else 0
        prompts.append(p)
        answers.append(a)
        totals.append(p + a)
        multi += n_users > 1
        code += bool(answer and CODE_HINT.search(answer))
        js += _is_json(answer)
    n = max(1, len(examples))
    return DataFacts(
        n_examples=len(examples),
        schema_name=schema_name,
        kind="classification" if labels and kind == "chat" else kind,
        n_labels=len(labels),
        multi_turn_share=round(multi / n, 3),
        prompt_tokens_p50=_pct(prompts, 0.5),
        answer_tokens_p50=_pct(answers, 0.5),
        tokens_p50=_pct(totals, 0.5),
        tokens_p99=_pct(totals, 0.99),
        tokens_max=max(totals, default=0),
        code_share=round(code / n, 3),
        json_share=round(js / n, 3),
        tokens_measured=count_tokens is not None,
        examples=_spread(examples, n_shown),
    )


def _spread(examples: list[dict], k: int) -> list[dict]:
    """k examples spread over the data (different labels, not the first k rows)."""
    if len(examples) <= k:
        return list(examples)
    step = len(examples) / k
    return [examples[int(i * step)] for i in range(k)]
