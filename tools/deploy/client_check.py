"""Prove a served model works for a real client: the official `openai` package lists the
models, asks for a chat completion and a streamed one, and replays held-out prompts.

The replayed answers are compared like with like: with the merged model's own greedy answers
in transformers, loaded as the server loads it (same weights, dtype and device), token by
token up to the first difference. There the reference's margin between its top two logits
says whether the difference is a near-tie that another batch shape or kernel can flip
(reported, not a failure) or a real difference (a wrong template, weights or stop token)."""

from __future__ import annotations

import time

from pydantic import BaseModel, Field


class ServedCheck(BaseModel):
    ok: bool
    base_url: str
    model_id: str = ""
    models_listed: list[str] = Field(default_factory=list)
    chat_answer: str = ""
    stream_answer: str = ""
    stream_chunks: int = 0
    latency_ms: dict[str, float] = Field(default_factory=dict)
    heldout_total: int = 0
    heldout_matches: int = 0
    near_ties: int = 0
    near_tie_margin: float = 0.0
    mismatches: list[dict] = Field(default_factory=list)
    problems: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        if not self.models_listed:
            return f"server at {self.base_url} did not answer: {'; '.join(self.problems)}"
        said = (f"served {self.model_id} at {self.base_url}: chat "
                f"{self.latency_ms.get('chat', 0):.0f} ms, stream first token "
                f"{self.latency_ms.get('stream_first', 0):.0f} ms ({self.stream_chunks} chunks)")
        if self.heldout_total:
            said += (f"; {self.heldout_matches}/{self.heldout_total} held-out answers equal "
                     f"the merged model's in transformers ({self.near_ties} near-ties within "
                     f"{self.near_tie_margin} logit)")
        return said + ("" if self.ok else ". Problems: " + "; ".join(self.problems))


# A first difference where the reference's top two logits are closer than this is a near-tie:
# the same weights in another batch shape or kernel round differently. bf16 keeps 8 bits of a
# logit (0.125 at 16-32, summed over layers); float32 differs only in summation order.
NEAR_TIE_MARGIN = {"bfloat16": 0.5, "float32": 0.05}


def first_difference(said: str, ref_tokens: list[int], ref_margins: list[float],
                     tokenizer) -> tuple[int | None, float | None]:
    """The reference token at which `said` parts from the reference's text (None if the
    texts agree), and the reference's top-1 minus top-2 logit there. Compared as text, so a
    served answer tokenised differently (but equal) is not a difference."""
    text = tokenizer.decode(ref_tokens, skip_special_tokens=True)
    if said.strip() == text.strip():
        return None, None
    common = next((i for i, (a, b) in enumerate(zip(said, text, strict=False)) if a != b),
                  min(len(said), len(text)))
    for k in range(len(ref_tokens) + 1):
        if k == len(ref_tokens) or len(tokenizer.decode(ref_tokens[:k + 1],
                                                        skip_special_tokens=True)) > common:
            return k, (ref_margins[k] if k < len(ref_margins) else None)
    return len(ref_tokens), None


def check_served(base_url: str, prompts: list[list[dict]], references: list[dict],
                 max_tokens: int, tokenizer, near_tie_margin: float,
                 api_key: str = "not-needed") -> ServedCheck:
    """`references[i]`: the merged model's greedy answer to `prompts[i]` as the server loads
    it ({"tokens", "margins"}: its token ids and each step's top-1 minus top-2 logit)."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=120, max_retries=0)
    c = ServedCheck(ok=False, base_url=base_url, near_tie_margin=near_tie_margin)
    try:
        c.models_listed = [m.id for m in client.models.list().data]
        c.model_id = c.models_listed[0]
        first = prompts[0] if prompts else [{"role": "user", "content": "Hello"}]
        t0 = time.perf_counter()
        reply = client.chat.completions.create(model=c.model_id, messages=first,
                                               max_tokens=max_tokens, temperature=0)
        c.latency_ms["chat"] = (time.perf_counter() - t0) * 1000
        c.chat_answer = reply.choices[0].message.content or ""
        t0, parts = time.perf_counter(), []
        for chunk in client.chat.completions.create(model=c.model_id, messages=first,
                                                    max_tokens=max_tokens, temperature=0,
                                                    stream=True):
            if chunk.choices and chunk.choices[0].delta.content:
                if not parts:
                    c.latency_ms["stream_first"] = (time.perf_counter() - t0) * 1000
                parts.append(chunk.choices[0].delta.content)
        c.latency_ms["stream_total"] = (time.perf_counter() - t0) * 1000
        c.stream_answer, c.stream_chunks = "".join(parts), len(parts)
        for conv, ref in zip(prompts, references, strict=True):
            got = client.chat.completions.create(model=c.model_id, messages=conv,
                                                 max_tokens=max_tokens, temperature=0)
            said = got.choices[0].message.content or ""
            c.heldout_total += 1
            at, margin = first_difference(said, ref["tokens"], ref["margins"], tokenizer)
            if at is None:
                c.heldout_matches += 1
                continue
            tie = margin is not None and margin < near_tie_margin
            c.near_ties += tie
            c.mismatches.append({
                "prompt": conv[-1]["content"], "served": said.strip(),
                "reference": tokenizer.decode(ref["tokens"], skip_special_tokens=True).strip(),
                "first_divergence": at, "margin": margin, "near_tie": tie})
    except openai.APIError as exc:
        c.problems.append(f"{type(exc).__name__}: {exc}")
        return c
    if c.stream_answer.strip() != c.chat_answer.strip():
        c.problems.append("the streamed answer differs from the non-streamed one")
    for m in c.mismatches:
        if not m["near_tie"]:
            margin = "none" if m["margin"] is None else f"{m['margin']:.3f}"
            c.problems.append(
                f"{m['prompt'][:40]!r}: the served answer parts from the merged model's at "
                f"token {m['first_divergence']} with a logit margin of {margin} (not a "
                f"near-tie): served {m['served'][:60]!r}, reference {m['reference'][:60]!r}")
    c.ok = not c.problems
    return c
