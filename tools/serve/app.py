"""An OpenAI-compatible HTTP server for a base model or base + LoRA adapter.

    python -m tools.serve MODEL_DIR [--adapter DIR] [--port 8000] [--api-key KEY] [--no-batching]

`GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions` (both with SSE
streaming), plus `GET /health` and `GET /stats` (the engine's counters). Generation runs in
`tools.serve_engine.BatchingEngine` (continuous batching on one thread); this module only
validates, tokenizes, and turns engine events into OpenAI-shaped JSON. Binds to 127.0.0.1
unless told otherwise. `start_server_process` runs it as a subprocess on a free loopback
port (the deployer and the load benchmark use it).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from ftagent.tools.paths import import_root
from ftagent.tools.serve import schemas as api
from ftagent.tools.serve.schemas import OpenAIError

API_KEY_ENV = "FTAGENT_SERVE_API_KEY"  # so the key need not appear in `ps`
DEFAULT_MAX_TOKENS = 1024  # a chat request without max_tokens: at most this, or what fits


def load_for_serving(model_dir: str | Path, adapter: str | Path | None = None,
                     bf16: bool = False):
    """Base model (folder or bundled name; safetensors only) and, if given, its adapter."""
    from ftagent.tools.evaluate.compare import load_plain, require_safetensors_adapter
    from ftagent.tools.models import resolve_model

    if adapter:  # before the base loads: a refused adapter should fail fast
        adapter = Path(adapter)
        require_safetensors_adapter(adapter)
    model, tokenizer = load_plain(resolve_model(str(model_dir)).path, bf16=bf16)
    if adapter:
        from peft import PeftModel
        from transformers import AutoTokenizer

        model = PeftModel.from_pretrained(model, adapter, use_safetensors=True).eval()
        if (adapter / "tokenizer_config.json").is_file():  # training may change the template
            tokenizer = AutoTokenizer.from_pretrained(adapter)
            tokenizer.pad_token = tokenizer.pad_token or tokenizer.eos_token
    return model, tokenizer


class _Choices:
    """Engine events of one HTTP request (n choices), delivered into the event loop."""

    def __init__(self, engine, jobs: list[tuple[list[int], object]]):
        loop, self.queue = asyncio.get_running_loop(), asyncio.Queue()
        self.requests = []
        try:
            for index, (prompt, params) in enumerate(jobs):
                put = (lambda i: lambda ev: loop.call_soon_threadsafe(
                    self.queue.put_nowait, (i, ev)))(index)
                self.requests.append(engine.submit(prompt, params, put))
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


def create_app(engine, model_id: str, api_key: str | None = None,
               default_max_tokens: int = DEFAULT_MAX_TOKENS):
    """The FastAPI app around a started-or-not engine (started and stopped by lifespan)."""
    from fastapi import FastAPI
    from ftagent.tools.evaluate.generation import prompt_ids
    from ftagent.tools.serve.engine import EngineBusy, SamplingParams
    from starlette.concurrency import run_in_threadpool
    from starlette.responses import StreamingResponse

    @contextlib.asynccontextmanager
    async def lifespan(_app):
        engine.start()
        yield
        engine.stop()

    app = FastAPI(title="ftagent serve", lifespan=lifespan)
    if api_key:
        app.add_middleware(api.ApiKeyCheck, api_key=api_key)
    tokenizer, created, encode_lock = engine.tokenizer, int(time.time()), threading.Lock()

    api.install_error_handlers(app)

    def check(req) -> None:
        if req.model != model_id:
            raise OpenAIError(404, f"The model `{req.model}` does not exist; this server "
                              f"serves `{model_id}`.", param="model", code="model_not_found")
        if bad := req.unsupported():
            raise OpenAIError(400, f"`{bad[0]}` is not supported by this server.",
                              param=bad[0], code="unsupported_parameter")

    def encode_chat(messages: list[dict]) -> list[int]:
        with encode_lock:  # one tokenizer, used from pool threads: keep it single-file
            return prompt_ids(tokenizer, [messages])[0]

    def encode_text(text: str) -> list[int]:
        with encode_lock:
            ids = tokenizer(text)["input_ids"]
        if not ids:
            raise OpenAIError(400, "The prompt is empty.", param="prompt")
        return ids

    def params_for(req, prompt: list[int], asked: int | None, what: str, i: int):
        room = engine.context_length - len(prompt)
        max_tokens = asked or min(default_max_tokens, room)
        if max_tokens > room:
            raise OpenAIError(
                400, f"This model's maximum context length is {engine.context_length} "
                f"tokens. However, you requested {len(prompt) + max_tokens} tokens "
                f"({len(prompt)} in the {what}, {max_tokens} in the completion). Please "
                f"reduce the length of the {what} or completion.",
                param=what, code="context_length_exceeded")
        seed = None if req.seed is None else req.seed + i  # n > 1: different draws
        return SamplingParams(max_tokens=max_tokens, temperature=req.temperature or 0.0,
                              top_p=req.top_p or 1.0, seed=seed, stop=req.stop_list())

    def start(jobs) -> _Choices:
        try:
            return _Choices(engine, jobs)
        except EngineBusy as exc:
            raise OpenAIError(429, f"Server busy: {exc}; retry shortly.", "server_error") from exc

    def usage(prompt_tokens: int, counts: list[int]) -> api.Usage:
        return api.Usage(prompt_tokens=prompt_tokens, completion_tokens=sum(counts),
                         total_tokens=prompt_tokens + sum(counts))

    async def collect(choices: _Choices, n: int):
        texts, reasons, counts = [""] * n, [None] * n, [0] * n
        try:
            async for i, ev in choices.events():
                texts[i] += ev.text
                reasons[i], counts[i] = ev.finish_reason or reasons[i], ev.completion_tokens
        finally:
            choices.cancel()  # no-op when all finished; frees the batch slot otherwise
        return texts, reasons, counts

    def sse(body: dict | str) -> str:
        return f"data: {body if isinstance(body, str) else json.dumps(body)}\n\n"

    def streamed(choices: _Choices, chunk, n: int, prompt_tokens: int, include_usage: bool,
                 greet: bool = False):
        async def lines():
            counts = [0] * n
            try:
                for i in range(n if greet else 0):  # chat opens with the role, as OpenAI's
                    yield sse(chunk(i, None, None, first=True))
                async for i, ev in choices.events():
                    counts[i] = ev.completion_tokens
                    if ev.text or ev.finish_reason:
                        yield sse(chunk(i, ev.text, ev.finish_reason))
                if include_usage:
                    yield sse(chunk(None, None, None, totals=usage(prompt_tokens, counts)))
            except OpenAIError as exc:  # headers are gone: report in-band, as OpenAI does
                yield sse(exc.body())
            finally:
                choices.cancel()  # also when the client hangs up mid-stream
            yield sse("[DONE]")

        return StreamingResponse(lines(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-cache"})

    @app.get("/health")
    async def health():
        return {"status": "ok", "model": model_id}

    @app.get("/stats")
    async def stats():
        return engine.stats()

    @app.get("/v1/models")
    async def list_models() -> api.ModelList:
        return api.ModelList(data=[api.ModelCard(id=model_id, created=created)])

    @app.get("/v1/models/{name:path}")
    async def get_model(name: str) -> api.ModelCard:
        if name != model_id:
            raise OpenAIError(404, f"The model `{name}` does not exist.", param="model",
                              code="model_not_found")
        return api.ModelCard(id=model_id, created=created)

    @app.post("/v1/chat/completions")
    async def chat(req: api.ChatCompletionRequest):
        check(req)
        messages = [m.for_template() for m in req.messages]
        try:
            prompt = await run_in_threadpool(encode_chat, messages)
        except Exception as exc:  # the template refuses the conversation (role order...)
            raise OpenAIError(400, f"Chat template error: {exc}", param="messages") from exc
        asked = req.max_completion_tokens or req.max_tokens
        jobs = [(prompt, params_for(req, prompt, asked, "messages", i)) for i in range(req.n)]
        choices, rid = start(jobs), api.new_id("chatcmpl")

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
            return streamed(choices, chunk, req.n, len(prompt), include, greet=True)
        texts, reasons, counts = await collect(choices, req.n)
        return api.ChatCompletion(
            id=rid, model=model_id, usage=usage(len(prompt), counts),
            choices=[api.ChatChoice(index=i, message=api.AssistantMessage(content=t),
                                    finish_reason=r)
                     for i, (t, r) in enumerate(zip(texts, reasons, strict=True))])

    @app.post("/v1/completions")
    async def complete(req: api.CompletionRequest):
        check(req)
        texts = [req.prompt] if isinstance(req.prompt, str) else req.prompt
        if not texts:
            raise OpenAIError(400, "The prompt is empty.", param="prompt")
        prompts = [await run_in_threadpool(encode_text, t) for t in texts]
        # choice index = prompt index * n + draw, as the OpenAI API numbers them
        jobs = [(p, params_for(req, p, req.max_tokens, "prompt", j))
                for p in prompts for j in range(req.n)]
        choices, rid, n = start(jobs), api.new_id("cmpl"), len(jobs)
        prompt_tokens = sum(map(len, prompts))

        if req.stream:
            def chunk(i, text, finish, first=False, totals=None):
                body = api.Completion(id=rid, model=model_id, usage=totals, choices=[] if i is None
                                      else [api.CompletionChoice(index=i, text=text,
                                                                 finish_reason=finish)])
                return body.model_dump(exclude_none=True) | {
                    "choices": [c.model_dump() for c in body.choices]}

            include = bool(req.stream_options and req.stream_options.include_usage)
            return streamed(choices, chunk, n, prompt_tokens, include)
        outs, reasons, counts = await collect(choices, n)
        return api.Completion(
            id=rid, model=model_id, usage=usage(prompt_tokens, counts),
            choices=[api.CompletionChoice(index=i, text=t, finish_reason=r)
                     for i, (t, r) in enumerate(zip(outs, reasons, strict=True))])

    return app


@dataclass
class ServeSettings:
    model_dir: str
    adapter: str | None = None
    host: str = "127.0.0.1"
    port: int = 8000
    api_key: str | None = None
    model_name: str | None = None  # the id in /v1/models; default: the folder's name
    max_batch_size: int = 8  # 1: no batching, one request at a time (the baseline)
    batch_wait_ms: float = 10.0  # when idle, how long the first request waits for company
    default_max_tokens: int = DEFAULT_MAX_TOKENS
    bf16: bool = False
    threads: int = 0  # torch CPU threads; 0: torch's default (one per core)
    log_level: str = "info"


def run_server(s: ServeSettings) -> None:
    """Load the model, then serve until SIGINT/SIGTERM."""
    import uvicorn
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    if s.threads:
        import torch

        torch.set_num_threads(s.threads)
    from ftagent.tools.models import resolve_model
    from ftagent.tools.serve.engine import BatchingEngine

    model, tokenizer = load_for_serving(s.model_dir, s.adapter, s.bf16)
    model_id = s.model_name or Path(s.adapter or resolve_model(s.model_dir).path).name
    engine = BatchingEngine(model, tokenizer, s.max_batch_size, s.batch_wait_ms / 1000)
    app = create_app(engine, model_id, s.api_key, s.default_max_tokens)
    if s.host not in {"127.0.0.1", "localhost", "::1"} and not s.api_key:
        print(f"warning: serving on {s.host} without --api-key: anyone who can reach this "
              "port can use the model", file=sys.stderr)
    print(f"Serving {model_id} at http://{s.host}:{s.port}/v1 (max batch {s.max_batch_size}, "
          f"context {engine.context_length})", file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(app, host=s.host, port=s.port, log_level=s.log_level,
                                  timeout_graceful_shutdown=5)).run()


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(prog="python -m ftagent.tools.serve",
                                 description=__doc__.split("\n")[0])
    ap.add_argument("model_dir", help="model folder, or the bundled name smollm2-135m-instruct")
    ap.add_argument("--adapter", help="LoRA adapter folder served on top of the model")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8000)
    ap.add_argument("--api-key", default=os.environ.get(API_KEY_ENV),
                    help=f"require 'Authorization: Bearer KEY' (default: ${API_KEY_ENV})")
    ap.add_argument("--model-name", help="model id to list (default: the folder name)")
    ap.add_argument("--no-batching", action="store_true", help="one request at a time")
    ap.add_argument("--max-batch-size", type=int, default=8)
    ap.add_argument("--batch-wait-ms", type=float, default=10.0)
    ap.add_argument("--default-max-tokens", type=int, default=DEFAULT_MAX_TOKENS)
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0: default)")
    ap.add_argument("--log-level", default="info")
    a = ap.parse_args(argv)
    run_server(ServeSettings(
        model_dir=a.model_dir, adapter=a.adapter, host=a.host, port=a.port, api_key=a.api_key,
        model_name=a.model_name, max_batch_size=1 if a.no_batching else a.max_batch_size,
        batch_wait_ms=a.batch_wait_ms, default_max_tokens=a.default_max_tokens, bf16=a.bf16,
        threads=a.threads, log_level=a.log_level))


# ---- running it as a subprocess ------------------------------------------------------


@dataclass
class ServerHandle:
    """A server subprocess on loopback; `stop()` ends it (also on leaving a `with`)."""

    process: subprocess.Popen
    port: int
    model_id: str
    api_key: str | None
    log_path: Path

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def log_tail(self, lines: int = 30) -> str:
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, timeout: float = 15.0) -> None:
        if self.process.poll() is None:
            self.process.terminate()  # SIGTERM: uvicorn shuts down gracefully
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def __enter__(self) -> ServerHandle:
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server_process(model_dir: str | Path, adapter: str | Path | None = None,
                         port: int | None = None, api_key: str | None = None,
                         model_name: str | None = None, no_batching: bool = False,
                         extra_args: list[str] | tuple[str, ...] = (), timeout: float = 180.0,
                         log_path: str | Path | None = None) -> ServerHandle:
    """Start `python -m tools.serve` on 127.0.0.1 and wait until `/v1/models` answers.

    Without `port`, a free one is picked (and picked again if another process takes it
    first). Raises RuntimeError with the tail of the server's log if it exits or is not
    up within `timeout` seconds.
    """
    import httpx

    model_dir = str(Path(model_dir).resolve()) if Path(model_dir).exists() else str(model_dir)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(import_root()), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop(API_KEY_ENV, None)
    if api_key:
        env[API_KEY_ENV] = api_key
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    for attempt in range(3):
        chosen = port or free_port()
        log = Path(log_path) if log_path else Path(tempfile.mkstemp(
            prefix="ftagent-serve-", suffix=".log")[1])
        cmd = [sys.executable, "-m", "ftagent.tools.serve", model_dir, "--port", str(chosen),
               "--host", "127.0.0.1", "--log-level", "warning", *extra_args]
        cmd += ["--adapter", str(Path(adapter).resolve())] if adapter else []
        cmd += ["--model-name", model_name] if model_name else []
        cmd += ["--no-batching"] if no_batching else []
        with log.open("wb") as out:
            proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env)
        handle = ServerHandle(proc, chosen, model_name or "", api_key, log)
        deadline, exited = time.monotonic() + timeout, None
        while time.monotonic() < deadline:
            if (exited := proc.poll()) is not None:
                break
            try:
                r = httpx.get(f"{handle.base_url}/models", headers=headers, timeout=2.0)
                if r.status_code == 200:
                    handle.model_id = r.json()["data"][0]["id"]
                    return handle
            except httpx.TransportError:
                pass
            time.sleep(0.2)
        handle.stop()
        tail = handle.log_tail()
        if port is None and "address already in use" in tail.lower() and attempt < 2:
            continue  # lost the race for the port: try another
        why = (f"exited with code {exited}" if exited is not None
               else f"did not answer within {timeout:.0f} s")
        raise RuntimeError(f"ftagent server ({' '.join(cmd[2:4])}) {why}. Log tail "
                           f"({log}):\n{tail}")
    raise AssertionError("unreachable")


if __name__ == "__main__":
    main()
