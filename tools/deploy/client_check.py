"""Prove a served model works for a real client: the official `openai` package lists the
models, asks for a chat completion and a streamed one, and replays held-out prompts whose
answers must match the tester's (same greedy settings)."""

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
    mismatches: list[dict] = Field(default_factory=list)
    min_match: float = 0.8
    problems: list[str] = Field(default_factory=list)

    def summary(self) -> str:
        if not self.models_listed:
            return f"server at {self.base_url} did not answer: {'; '.join(self.problems)}"
        said = (f"served {self.model_id} at {self.base_url}: chat "
                f"{self.latency_ms.get('chat', 0):.0f} ms, stream first token "
                f"{self.latency_ms.get('stream_first', 0):.0f} ms ({self.stream_chunks} chunks)")
        if self.heldout_total:
            said += (f"; {self.heldout_matches}/{self.heldout_total} held-out answers equal "
                     "the tester's")
        return said + ("" if self.ok else ". Problems: " + "; ".join(self.problems))


def check_served(base_url: str, prompts: list[list[dict]], expected: list[str],
                 max_tokens: int, api_key: str = "not-needed",
                 min_match: float = 0.8) -> ServedCheck:
    """`expected[i]` is the tester's greedy answer to `prompts[i]`. Greedy decoding in another
    process (merged weights, a different batch) can flip a near-tied token, so a few
    differences are tolerated: at least `min_match` of the answers must be equal."""
    import openai

    client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=120, max_retries=0)
    c = ServedCheck(ok=False, base_url=base_url, min_match=min_match)
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
        for conv, want in zip(prompts, expected, strict=True):
            got = client.chat.completions.create(model=c.model_id, messages=conv,
                                                 max_tokens=max_tokens, temperature=0)
            said = (got.choices[0].message.content or "").strip()
            c.heldout_total += 1
            if said == want.strip():
                c.heldout_matches += 1
            else:
                c.mismatches.append({"prompt": conv[-1]["content"], "served": said,
                                     "tester": want})
    except openai.APIError as exc:
        c.problems.append(f"{type(exc).__name__}: {exc}")
        return c
    if c.stream_answer.strip() != c.chat_answer.strip():
        c.problems.append("the streamed answer differs from the non-streamed one")
    if c.heldout_total and c.heldout_matches < min_match * c.heldout_total:
        c.problems.append(f"only {c.heldout_matches}/{c.heldout_total} held-out answers equal "
                          "the tester's: the served model or its chat template differs")
    c.ok = not c.problems
    return c
