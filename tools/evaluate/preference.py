"""Held-out preference pairs ({prompt, chosen, rejected}): does the tuned model prefer what
people preferred?

- preference accuracy: share of pairs where the model gives the chosen answer a higher
  log-likelihood than the rejected one (summed over answer tokens, as DPO scores them).
- reward accuracy and margin: DPO's implicit reward, log pi_tuned(y|x) - log pi_base(y|x),
  chosen minus rejected (the base is DPO's reference). Positive means training moved
  probability towards the chosen answer relative to the rejected one. In nats, without beta.
"""

from __future__ import annotations

from ftagent.tools.evaluate.likelihood import answer_nll
from pydantic import BaseModel


class PairLogprobs(BaseModel):
    """Summed answer log-likelihoods of each pair under one model."""

    chosen: list[float]
    rejected: list[float]


def as_chat_rows(rows: list[dict]) -> list[dict]:
    """Preference rows as chat rows (prompt + chosen) for loss, generation and samples."""
    return [{"messages": r["prompt"] + r["chosen"][-1:]} for r in rows]


def pair_logprobs(model, tokenizer, rows: list[dict]) -> PairLogprobs:
    """Both answers of every pair scored as DPO scores them, for accuracy and rewards."""
    chosen = answer_nll(model, tokenizer, [r["prompt"] + r["chosen"][-1:] for r in rows])
    rejected = answer_nll(model, tokenizer, [r["prompt"] + r["rejected"][-1:] for r in rows])
    return PairLogprobs(chosen=[-s for s, _ in chosen], rejected=[-s for s, _ in rejected])


def preference_accuracy(lp: PairLogprobs) -> float:
    pairs = list(zip(lp.chosen, lp.rejected, strict=True))
    return sum(c > r for c, r in pairs) / max(len(pairs), 1)


def implicit_rewards(base: PairLogprobs, tuned: PairLogprobs) -> list[float]:
    """Per pair: (tuned - base) on chosen minus (tuned - base) on rejected."""
    return [
        (tc - bc) - (tr - br)
        for bc, br, tc, tr in zip(base.chosen, base.rejected, tuned.chosen, tuned.rejected,
                                  strict=True)
    ]


def reward_stats(base: PairLogprobs, tuned: PairLogprobs) -> tuple[float, float]:
    """(reward accuracy, mean reward margin) of tuned with base as the reference."""
    r = implicit_rewards(base, tuned)
    if not r:
        return 0.0, 0.0
    return sum(x > 0 for x in r) / len(r), sum(r) / len(r)
