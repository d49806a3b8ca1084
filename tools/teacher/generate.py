"""Answers from a teacher for many conversations: cached answers first, then the rest from
the endpoint (concurrent, rate-limited, retried by the `openai` client with exponential
backoff) or from a local model folder (batched greedy generation). Every answer is written
to the cache the moment it arrives."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime

from ftagent.tools.teacher.cache import Answer, AnswerCache
from ftagent.tools.teacher.settings import TeacherSettings, request_key

Progress = Callable[[int, int], None]  # (done, total)


def progress_bar(label: str) -> Progress:
    """A tqdm bar on stderr as a progress callback (for headless runs and the CLI)."""
    from tqdm.auto import tqdm

    bar = tqdm(desc=label, unit="answer", leave=False)

    def update(done: int, total: int) -> None:
        bar.total = total
        bar.n = done
        bar.refresh()
        if done >= total:
            bar.close()

    return update


class TeacherError(RuntimeError):
    """The teacher could not be used at all (unreachable, refused every request)."""


@dataclass
class GenerationStats:
    prompts: int = 0
    cache_hits: int = 0
    requests: int = 0
    failed: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    wall_s: float = 0.0
    errors: list[str] = field(default_factory=list)  # the first few, for the report


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


class RateLimiter:
    """Starts at most `per_minute` requests a minute, evenly spaced, across threads."""

    def __init__(self, per_minute: float):
        self.gap = 60.0 / per_minute
        self.next = time.monotonic()
        self.lock = threading.Lock()

    def wait(self) -> None:
        with self.lock:
            now = time.monotonic()
            start = max(now, self.next)
            self.next = start + self.gap
        if start > now:
            time.sleep(start - now)


def cost_of(settings: TeacherSettings, prompt_tokens: int, completion_tokens: int) -> float:
    return (prompt_tokens * settings.price_in_per_mtok
            + completion_tokens * settings.price_out_per_mtok) / 1e6


Deliver = Callable[[str, Answer], None]  # (cache key, answer): record, cache, count


def _endpoint_answers(settings: TeacherSettings, todo: list[tuple[str, list[dict]]],
                      deliver: Deliver) -> None:
    import openai

    client = openai.OpenAI(base_url=settings.base_url, api_key=settings.api_key(),
                           max_retries=settings.max_retries, timeout=settings.timeout_s)
    limiter = RateLimiter(settings.requests_per_minute)

    def ask(key: str, messages: list[dict]) -> None:
        limiter.wait()
        try:
            r = client.chat.completions.create(
                model=settings.model, messages=messages, temperature=settings.temperature,
                max_tokens=settings.max_tokens)
        except openai.APIError as exc:  # after the client's own retries
            deliver(key, Answer("", f"error: {type(exc).__name__}: {exc}"[:300], 0, 0, _now()))
            return
        choice, usage = r.choices[0], r.usage
        deliver(key, Answer(choice.message.content or "", choice.finish_reason or "stop",
                            usage.prompt_tokens if usage else 0,
                            usage.completion_tokens if usage else 0, _now()))

    with ThreadPoolExecutor(max_workers=settings.concurrency) as pool:
        for f in [pool.submit(ask, k, m) for k, m in todo]:
            f.result()


def _local_answers(settings: TeacherSettings, todo: list[tuple[str, list[dict]]],
                   deliver: Deliver) -> None:
    """Greedy batched generation with the local folder (fp32, safetensors, no remote code);
    answers are delivered, and cached, batch by batch, so a killed run loses one batch."""
    import torch
    from ftagent.tools.evaluate.generation import generate
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(settings.model)
    model = AutoModelForCausalLM.from_pretrained(settings.model, dtype=torch.float32,
                                                 use_safetensors=True)
    for start in range(0, len(todo), settings.batch_size):
        chunk = todo[start:start + settings.batch_size]
        with torch.inference_mode():
            texts = generate(model, tok, [m for _, m in chunk], settings.max_tokens,
                             batch_size=settings.batch_size)
        for (key, messages), text in zip(chunk, texts, strict=True):
            prompt = tok.apply_chat_template(messages, add_generation_prompt=True,
                                             tokenize=False)
            n_in = len(tok(prompt, add_special_tokens=False)["input_ids"])
            n_out = len(tok(text, add_special_tokens=False)["input_ids"])
            finish = "length" if n_out >= settings.max_tokens else "stop"
            deliver(key, Answer(text, finish, n_in, n_out, _now()))


def generate_answers(
    settings: TeacherSettings,
    conversations: Sequence[list[dict]],
    cache: AnswerCache,
    on_progress: Progress | None = None,
) -> tuple[list[Answer], GenerationStats]:
    """One answer per conversation, in order. Failed requests come back with
    finish_reason `error: ...` and are not cached (a later run asks again); when every
    request fails, the teacher is unusable and TeacherError says why."""
    t0 = time.monotonic()
    keys = [request_key(settings, list(m)) for m in conversations]
    answers: list[Answer | None] = [cache.get(k) for k in keys]
    stats = GenerationStats(prompts=len(keys), cache_hits=sum(a is not None for a in answers))
    pending: dict[str, list[int]] = {}  # identical prompts are asked once
    for i, a in enumerate(answers):
        if a is None:
            pending.setdefault(keys[i], []).append(i)
    todo = [(k, list(conversations[idx[0]])) for k, idx in pending.items()]
    lock = threading.Lock()
    done = stats.cache_hits
    if on_progress:
        on_progress(done, len(keys))

    def deliver(key: str, a: Answer) -> None:
        nonlocal done
        if not a.finish_reason.startswith("error"):
            cache.put(key, a)
        with lock:
            for i in pending[key]:
                answers[i] = a
            stats.requests += 1
            stats.prompt_tokens += a.prompt_tokens
            stats.completion_tokens += a.completion_tokens
            if a.finish_reason.startswith("error"):
                stats.failed += 1
                if len(stats.errors) < 3:
                    stats.errors.append(a.finish_reason)
            done += len(pending[key])
            if on_progress:
                on_progress(done, len(keys))

    if todo:
        (_local_answers if settings.local else _endpoint_answers)(settings, todo, deliver)
    for i, a in enumerate(answers):
        if a is None:
            answers[i] = Answer("", "error: no answer", 0, 0, _now())
    stats.cost_usd = round(cost_of(settings, stats.prompt_tokens, stats.completion_tokens), 6)
    stats.wall_s = round(time.monotonic() - t0, 2)
    if todo and stats.failed == len(todo):
        raise TeacherError(
            f"the teacher {settings.describe()} answered none of {len(todo)} requests: "
            f"{stats.errors[0] if stats.errors else 'no answer'}. Check the URL, the model "
            f"name and the key in ${settings.api_key_env}.")
    return answers, stats  # type: ignore[return-value]
