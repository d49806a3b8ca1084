"""The HTTP side of the server: a FastAPI app whose routes validate OpenAI-shaped requests,
tokenize them, hand them to the batching engine and turn its events back into OpenAI's
JSON (or an SSE stream). The model itself lives in the engine; nothing here generates.

Imported only when a server is about to run, so FastAPI and the engine's torch imports
never slow down code that merely launches a server process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable, Sequence

from fastapi import FastAPI
from ftagent.tools.evaluate.generation import prompt_ids
from ftagent.tools.serve import schemas as api
from ftagent.tools.serve.engine import EngineBusy, SamplingParams
from ftagent.tools.serve.options import DEFAULT_MAX_TOKENS
from ftagent.tools.serve.schemas import OpenAIError
from ftagent.tools.serve.served import ServedModel, ServedModels
from starlette.concurrency import run_in_threadpool
from starlette.responses import StreamingResponse


class _Choices:
    """Engine events of one HTTP request (n choices), delivered into the event loop."""

    def __init__(self, engine, jobs: list[tuple[list[int], object]], adapter: str | None):
        loop, self.queue = asyncio.get_running_loop(), asyncio.Queue()
        self.requests = []
        try:
            for index, (prompt, params) in enumerate(jobs):
                put = (lambda i: lambda ev: loop.call_soon_threadsafe(
                    self.queue.put_nowait, (i, ev)))(index)
                self.requests.append(engine.submit(prompt, params, put, adapter))
        except Exception:
            self.cancel()
            raise

    async def events(self) -> AsyncIterator[tuple[int, object]]:
        pending = len(self.requests)
        while pending:
            index, ev = await self.queue.get()
            if ev.error:
                raise OpenAIError(500, f"generation failed: {ev.error}", "server_error")
            pending -= ev.finish_reason is not None
            yield index, ev

    def cancel(self) -> None:
        for req in self.requests:
            req.cancel()


def _usage(prompt_tokens: int, counts: list[int]) -> api.Usage:
    """OpenAI's token accounting: clients bill and budget by it."""
    return api.Usage(prompt_tokens=prompt_tokens, completion_tokens=sum(counts),
                     total_tokens=prompt_tokens + sum(counts))


def _sse(body: dict | str) -> str:
    """One server-sent event, the framing OpenAI's streaming clients parse."""
    return f"data: {body if isinstance(body, str) else json.dumps(body)}\n\n"


async def _collect(choices: _Choices, n: int):
    """A non-streaming answer: every choice's text, finish reason and token count."""
    texts, reasons, counts = [""] * n, [None] * n, [0] * n
    try:
        async for i, ev in choices.events():
            texts[i] += ev.text
            reasons[i], counts[i] = ev.finish_reason or reasons[i], ev.completion_tokens
    finally:
        choices.cancel()  # no-op when all finished; frees the batch slot otherwise
    return texts, reasons, counts


def _streamed(choices: _Choices, chunk, n: int, prompt_tokens: int, include_usage: bool,
              greet: bool = False) -> StreamingResponse:
    """A streaming answer. Errors after the headers are sent can only be reported inside
    the stream, and a client hanging up must free its batch slot: both are handled here,
    once, for chat and completions alike."""
    async def lines():
        counts = [0] * n
        try:
            for i in range(n if greet else 0):  # chat opens with the role, as OpenAI's
                yield _sse(chunk(i, None, None, first=True))
            async for i, ev in choices.events():
                counts[i] = ev.completion_tokens
                if ev.text or ev.finish_reason:
                    yield _sse(chunk(i, ev.text, ev.finish_reason))
            if include_usage:
                yield _sse(chunk(None, None, None, totals=_usage(prompt_tokens, counts)))
        except OpenAIError as exc:  # headers are gone: report in-band, as OpenAI does
            yield _sse(exc.body())
        finally:
            choices.cancel()  # also when the client hangs up mid-stream
        yield _sse("[DONE]")

    return StreamingResponse(lines(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache"})


class _Backend:
    """What every generating route needs from the engine: the request checks (which served
    model), tokenizing (tokenizers shared by pool threads, so behind a lock), sampling
    parameters that fit the context, and submitting. One object instead of closures, so
    each route below reads as a short function."""

    def __init__(self, engine, served: ServedModels, default_max_tokens: int):
        self.engine, self.served = engine, served
        self.default_max_tokens = default_max_tokens
        self.encode_lock = threading.Lock()

    def check(self, req) -> ServedModel:
        model = self.served.get(req.model)
        if model is None:
            raise OpenAIError(404, f"The model `{req.model}` does not exist; this server "
                              f"serves {', '.join(f'`{m}`' for m in self.served.ids())}.",
                              param="model", code="model_not_found")
        if bad := req.unsupported():
            raise OpenAIError(400, f"`{bad[0]}` is not supported by this server.",
                              param=bad[0], code="unsupported_parameter")
        return model

    def encode_chat(self, model: ServedModel, messages: list[dict]) -> list[int]:
        with self.encode_lock:  # tokenizers used from pool threads: keep them single-file
            return prompt_ids(model.tokenizer, [messages])[0]

    def encode_text(self, model: ServedModel, text: str) -> list[int]:
        with self.encode_lock:
            ids = model.tokenizer(text)["input_ids"]
        if not ids:
            raise OpenAIError(400, "The prompt is empty.", param="prompt")
        return ids

    def params_for(self, req, prompt: list[int], asked: int | None, what: str, i: int):
        room = self.engine.context_length - len(prompt)
        max_tokens = asked or min(self.default_max_tokens, room)
        if max_tokens > room:
            raise OpenAIError(
                400, f"This model's maximum context length is {self.engine.context_length} "
                f"tokens. However, you requested {len(prompt) + max_tokens} tokens "
                f"({len(prompt)} in the {what}, {max_tokens} in the completion). Please "
                f"reduce the length of the {what} or completion.",
                param=what, code="context_length_exceeded")
        seed = None if req.seed is None else req.seed + i  # n > 1: different draws
        return SamplingParams(max_tokens=max_tokens, temperature=req.temperature or 0.0,
                              top_p=req.top_p or 1.0, seed=seed, stop=req.stop_list())

    def start(self, jobs, model: ServedModel) -> _Choices:
        try:
            return _Choices(self.engine, jobs, model.adapter)
        except EngineBusy as exc:
            raise OpenAIError(429, f"Server busy: {exc}; retry shortly.", "server_error") from exc


# An extension adds routes to the app and may return a context manager that the app enters
# once the engine runs and leaves before it stops (a fine-tuning job manager, for one).
# The server's own routes know nothing of what extensions do.
Extension = Callable[[FastAPI, ServedModels], contextlib.AbstractContextManager | None]


def create_app(engine, model_id: str, api_key: str | None = None,
               default_max_tokens: int = DEFAULT_MAX_TOKENS,
               served: ServedModels | None = None, extensions: Sequence[Extension] = ()):
    """The FastAPI app around a started-or-not engine (started and stopped by lifespan).
    `served` lists the models it answers to (default: `model_id` alone, the base model)."""
    served = served or ServedModels(engine, model_id)
    started: list[contextlib.AbstractContextManager] = []

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        engine.start()
        with contextlib.ExitStack() as stack:
            for ctx in started:
                await run_in_threadpool(stack.enter_context, ctx)
            try:
                yield
            finally:
                await run_in_threadpool(stack.close)
        engine.stop()

    app = FastAPI(title="ftagent serve", lifespan=lifespan)
    if api_key:
        app.add_middleware(api.ApiKeyCheck, api_key=api_key)
    api.install_error_handlers(app)
    backend = _Backend(engine, served, default_max_tokens)
    _add_info_routes(app, engine, served)
    _add_chat_route(app, backend)
    _add_completions_route(app, backend)
    for extend in extensions:
        if (ctx := extend(app, served)) is not None:
            started.append(ctx)
    return app


def _add_info_routes(app: FastAPI, engine, served: ServedModels) -> None:
    """The routes that never generate: health, the engine's counters, the model list."""

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": served.base_id}

    @app.get("/stats")
    async def stats():
        return engine.stats()

    @app.get("/v1/models")
    async def list_models() -> api.ModelList:
        return api.ModelList(data=[api.ModelCard(id=m.id, created=m.created)
                                   for m in served.all()])

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str) -> api.ModelCard:
        if (model := served.get(name)) is None:
            raise OpenAIError(404, f"The model `{name}` does not exist.", param="model",
                              code="model_not_found")
        return api.ModelCard(id=model.id, created=model.created)


def _add_chat_route(app: FastAPI, backend: _Backend) -> None:
    """POST /v1/chat/completions: the conversation through the model's chat template."""

    @app.post("/v1/chat/completions")
    async def chat(req: api.ChatCompletionRequest):
        model = backend.check(req)
        model_id = model.id
        messages = [m.for_template() for m in req.messages]
        try:
            prompt = await run_in_threadpool(backend.encode_chat, model, messages)
        except Exception as exc:  # the template refuses the conversation (role order...)
            raise OpenAIError(400, f"Chat template error: {exc}", param="messages") from exc
        asked = req.max_completion_tokens or req.max_tokens
        jobs = [(prompt, backend.params_for(req, prompt, asked, "messages", i))
                for i in range(req.n)]
        choices, rid = backend.start(jobs, model), api.new_id("chatcmpl")

        if req.stream:
            def chunk(i, text, finish, first=False, totals=None):
                delta = (api.Delta(role="assistant", content="") if first
                         else api.Delta(content=text))
                body = api.ChatCompletionChunk(
                    id=rid, model=model_id, usage=totals,
                    choices=[] if i is None else [api.ChunkChoice(index=i, delta=delta)],
                ).model_dump(exclude_none=True)
                for c in body["choices"]:
                    c.update(finish_reason=finish, logprobs=None)
                return body

            include = bool(req.stream_options and req.stream_options.include_usage)
            return _streamed(choices, chunk, req.n, len(prompt), include, greet=True)
        texts, reasons, counts = await _collect(choices, req.n)
        return api.ChatCompletion(
            id=rid, model=model_id, usage=_usage(len(prompt), counts),
            choices=[api.ChatChoice(index=i, message=api.AssistantMessage(content=t),
                                    finish_reason=r)
                     for i, (t, r) in enumerate(zip(texts, reasons, strict=True))])


def _add_completions_route(app: FastAPI, backend: _Backend) -> None:
    """POST /v1/completions: raw prompts, no template (one or a list of them)."""

    @app.post("/v1/completions")
    async def complete(req: api.CompletionRequest):
        model = backend.check(req)
        model_id = model.id
        texts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not texts:
            raise OpenAIError(400, "The prompt is empty.", param="prompt")
        prompts = [await run_in_threadpool(backend.encode_text, model, t) for t in texts]
        # choice index = prompt index * n + draw, as the OpenAI API numbers them
        jobs = [(p, backend.params_for(req, p, req.max_tokens, "prompt", j))
                for p in prompts for j in range(req.n)]
        choices, rid, n = backend.start(jobs, model), api.new_id("cmpl"), len(jobs)
        prompt_tokens = sum(map(len, prompts))

        if req.stream:
            def chunk(i, text, finish, first=False, totals=None):
                body = api.Completion(id=rid, model=model_id, usage=totals, choices=[] if i is None
                                      else [api.CompletionChoice(index=i, text=text,
                                                                 finish_reason=finish)])
                return body.model_dump(exclude_none=True) | {
                    "choices": [c.model_dump() for c in body.choices]}

            include = bool(req.stream_options and req.stream_options.include_usage)
            return _streamed(choices, chunk, n, prompt_tokens, include)
        outs, reasons, counts = await _collect(choices, n)
        return api.Completion(
            id=rid, model=model_id, usage=_usage(prompt_tokens, counts),
            choices=[api.CompletionChoice(index=i, text=t, finish_reason=r)
                     for i, (t, r) in enumerate(zip(outs, reasons, strict=True))])
