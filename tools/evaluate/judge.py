"""Optional LLM-as-judge: base vs tuned answers compared pairwise by any OpenAI-compatible
chat endpoint (OpenAI, vLLM, Ollama, llama.cpp, `ftagent serve`).

Each pair is judged twice with the answers' positions swapped. Judges favour a position
(often the first); a verdict counts as a win only when both orders agree, otherwise it is a
tie and is counted as inconsistent, so position bias cannot make one model look better.
"""

from __future__ import annotations

import os
import re
from typing import Literal

from pydantic import BaseModel, Field

Choice = Literal["A", "B", "tie"]
Winner = Literal["tuned", "base", "tie"]

_VERDICT = re.compile(r"verdict\s*[:=]?\s*\**\s*(tie|a|b)\b", re.IGNORECASE)


class JudgeEndpoint(BaseModel):
    base_url: str
    model: str
    api_key: str = "not-needed"  # local servers accept any key
    timeout_s: float = 60.0
    max_retries: int = 2
    max_items: int = 25  # pairs judged (each twice)
    max_tokens: int = 64  # room for a short reason before the verdict line

    @classmethod
    def from_env(cls) -> JudgeEndpoint | None:
        """FTAGENT_JUDGE_BASE_URL and FTAGENT_JUDGE_MODEL (key: FTAGENT_JUDGE_API_KEY, else
        OPENAI_API_KEY); None when no judge is configured."""
        url, model = os.environ.get("FTAGENT_JUDGE_BASE_URL"), os.environ.get(
            "FTAGENT_JUDGE_MODEL")
        if not (url and model):
            return None
        key = os.environ.get("FTAGENT_JUDGE_API_KEY") or os.environ.get("OPENAI_API_KEY")
        return cls(base_url=url, model=model, api_key=key or "not-needed")


class JudgedPair(BaseModel):
    index: int
    base_first: Choice | None  # verdict with base as A, tuned as B
    tuned_first: Choice | None  # verdict with tuned as A, base as B
    winner: Winner


class JudgeResult(BaseModel):
    model: str
    n: int = 0
    tuned_wins: int = 0
    base_wins: int = 0
    ties: int = 0
    inconsistent: int = 0  # the two orders disagreed (position bias): counted as ties
    unparsed: int = 0  # replies without a verdict line: counted as ties
    win_rate: float | None = None  # (tuned wins + ties / 2) / n
    error: str = ""  # the endpoint failed: no verdicts
    pairs: list[JudgedPair] = Field(default_factory=list)

    @property
    def summary(self) -> str:
        if self.error:
            return f"LLM judge ({self.model}) failed: {self.error}"
        return (f"LLM judge ({self.model}, {self.n} pairs, both orders): tuned wins "
                f"{self.tuned_wins}, base wins {self.base_wins}, ties {self.ties} "
                f"({self.inconsistent} inconsistent); tuned win rate {self.win_rate:.0%}.")


def render_conversation(messages: list[dict]) -> str:
    return "\n".join(f"{m['role']}: {m['content']}" for m in messages)


def judge_messages(conversation: list[dict], answer_a: str, answer_b: str,
                   reference: str | None) -> list[dict]:
    from ftagent.prompts import load

    text = load("judge_pairwise.md").format(
        conversation=render_conversation(conversation),
        reference=reference or "(none)",
        answer_a=answer_a or "(empty answer)",
        answer_b=answer_b or "(empty answer)",
    )
    return [{"role": "user", "content": text}]


def parse_choice(reply: str) -> Choice | None:
    """The last `Verdict: A|B|tie` in the reply (a judge may reason first)."""
    found = _VERDICT.findall(reply or "")
    if not found:
        return None
    v = found[-1].lower()
    return "tie" if v == "tie" else v.upper()  # type: ignore[return-value]


def combine(base_first: Choice | None, tuned_first: Choice | None) -> Winner:
    """A win only when both orders name the same model."""
    as_model = {
        "base_first": {"A": "base", "B": "tuned"},
        "tuned_first": {"A": "tuned", "B": "base"},
    }
    a = as_model["base_first"].get(base_first or "")
    b = as_model["tuned_first"].get(tuned_first or "")
    return a if a is not None and a == b else "tie"  # type: ignore[return-value]


def tally(model: str, pairs: list[JudgedPair]) -> JudgeResult:
    r = JudgeResult(model=model, n=len(pairs), pairs=pairs)
    for p in pairs:
        if p.winner == "tuned":
            r.tuned_wins += 1
        elif p.winner == "base":
            r.base_wins += 1
        else:
            r.ties += 1
            if p.base_first is None or p.tuned_first is None:
                r.unparsed += 1
            elif p.base_first != "tie" or p.tuned_first != "tie":
                r.inconsistent += 1
    r.win_rate = (r.tuned_wins + r.ties / 2) / r.n if r.n else None
    return r


def judge_pairs(endpoint: JudgeEndpoint, prompts: list[list[dict]], base_answers: list[str],
                tuned_answers: list[str], references: list[str] | None = None) -> JudgeResult:
    """Ask the judge twice per pair (greedy); a failing endpoint gives a result with `error`
    set instead of failing the evaluation."""
    import openai

    client = openai.OpenAI(base_url=endpoint.base_url, api_key=endpoint.api_key,
                           timeout=endpoint.timeout_s, max_retries=endpoint.max_retries)
    refs = references or [None] * len(prompts)

    def ask(conv, a, b, ref) -> Choice | None:
        reply = client.chat.completions.create(
            model=endpoint.model, messages=judge_messages(conv, a, b, ref),
            temperature=0, max_tokens=endpoint.max_tokens)
        return parse_choice(reply.choices[0].message.content or "")

    pairs = []
    try:
        for i, (conv, b, t, ref) in enumerate(
            zip(prompts, base_answers, tuned_answers, refs, strict=True)
        ):
            if i >= endpoint.max_items:
                break
            first, second = ask(conv, b, t, ref), ask(conv, t, b, ref)
            pairs.append(JudgedPair(index=i, base_first=first, tuned_first=second,
                                    winner=combine(first, second)))
    except openai.APIError as exc:
        return JudgeResult(model=endpoint.model, error=_explain(exc, endpoint))
    return tally(endpoint.model, pairs)


def _explain(exc, endpoint: JudgeEndpoint) -> str:
    import openai

    if isinstance(exc, openai.AuthenticationError):
        return f"the judge endpoint {endpoint.base_url} refused the API key (401): set " \
               "FTAGENT_JUDGE_API_KEY"
    if isinstance(exc, openai.APIConnectionError):
        return f"cannot reach {endpoint.base_url}: is the server running?"
    if isinstance(exc, openai.NotFoundError):
        return f"the endpoint has no model '{endpoint.model}': set FTAGENT_JUDGE_MODEL"
    return f"{type(exc).__name__}: {exc}"
