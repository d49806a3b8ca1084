"""An OpenAI-compatible HTTP server for a base model or base + LoRA adapter.

    python -m ftagent.tools.serve MODEL_DIR [--adapter DIR] [--port 8000] [--api-key KEY]
        [--no-batching]

`GET /v1/models`, `POST /v1/chat/completions` and `POST /v1/completions` (both with SSE
streaming), plus `GET /health` and `GET /stats` (the engine's counters). Generation runs in
`tools.serve.engine.BatchingEngine` (continuous batching on one thread); the routes that
validate, tokenize and turn engine events into OpenAI-shaped JSON are in
`tools.serve.routes`, the options in `tools.serve.options`. This module loads the model
and runs the server; binds to 127.0.0.1 unless told otherwise. `start_server_process`
runs it as a subprocess on a free loopback port (the deployer and the load benchmark use
it).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from ftagent.tools.paths import import_root
from ftagent.tools.serve.options import API_KEY_ENV, ServeSettings, build_parser, settings_from


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


def run_server(s: ServeSettings, extensions=()) -> None:
    """Load the model, then serve until SIGINT/SIGTERM. `extensions` add routes (see
    `tools.serve.routes.Extension`): `ftagent serve --fine-tuning` passes its job API."""
    import uvicorn
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    if s.threads:
        import torch

        torch.set_num_threads(s.threads)
    from ftagent.tools.models import resolve_model
    from ftagent.tools.serve.engine import BatchingEngine
    from ftagent.tools.serve.routes import create_app

    model, tokenizer = load_for_serving(s.model_dir, s.adapter, s.bf16)
    model_id = s.model_name or Path(s.adapter or resolve_model(s.model_dir).path).name
    engine = BatchingEngine(model, tokenizer, s.max_batch_size, s.batch_wait_ms / 1000)
    app = create_app(engine, model_id, s.api_key, s.default_max_tokens, extensions=extensions)
    if s.host not in {"127.0.0.1", "localhost", "::1"} and not s.api_key:
        print(f"warning: serving on {s.host} without --api-key: anyone who can reach this "
              "port can use the model", file=sys.stderr)
    print(f"Serving {model_id} at http://{s.host}:{s.port}/v1 (max batch {s.max_batch_size}, "
          f"context {engine.context_length})", file=sys.stderr, flush=True)
    uvicorn.Server(uvicorn.Config(app, host=s.host, port=s.port, log_level=s.log_level,
                                  timeout_graceful_shutdown=5)).run()


def main(argv: list[str] | None = None) -> None:
    """`python -m ftagent.tools.serve`: the server in its own process, options as in
    `tools.serve.options` (which `ftagent serve` shares)."""
    ap = build_parser("python -m ftagent.tools.serve", __doc__.split("\n")[0])
    run_server(settings_from(vars(ap.parse_args(argv))))


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
                         log_path: str | Path | None = None,
                         entry: tuple[str, ...] = ("-m", "ftagent.tools.serve"),
                         extra_env: dict | None = None) -> ServerHandle:
    """Start `python -m ftagent.tools.serve` on 127.0.0.1 and wait until `/v1/models` answers.

    `entry` is what follows the interpreter: `("-m", "ftagent", "serve")` starts the
    command line's `ftagent serve` instead (which has options of its own, such as
    `--fine-tuning`, passed in `extra_args`); `extra_env` adds environment variables. Without
    `port`, a free one is picked (and picked again if another process takes it first).
    Raises RuntimeError with the tail of the server's log if it exits or is not up within
    `timeout` seconds.
    """
    import httpx

    model_dir = str(Path(model_dir).resolve()) if Path(model_dir).exists() else str(model_dir)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(import_root()), *filter(None, [os.environ.get("PYTHONPATH")])])}
    env.pop(API_KEY_ENV, None)
    env.update(extra_env or {})
    if api_key:
        env[API_KEY_ENV] = api_key
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    for attempt in range(3):
        chosen = port or free_port()
        log = Path(log_path) if log_path else Path(tempfile.mkstemp(
            prefix="ftagent-serve-", suffix=".log")[1])
        cmd = [sys.executable, *entry, model_dir, "--port", str(chosen),
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
        what = " ".join(cmd[1:len(entry) + 2])
        raise RuntimeError(f"ftagent server ({what}) {why}. Log tail ({log}):\n{tail}")
    raise AssertionError("unreachable")


if __name__ == "__main__":
    main()
