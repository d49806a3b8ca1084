"""`ftagent serve`: an OpenAI-compatible HTTP server for a model or model + adapter."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def serve_command(
    model_dir: Annotated[
        str, typer.Argument(help="model folder, or the bundled name smollm2-135m-instruct")
    ],
    adapter: Annotated[
        Path | None, typer.Option(help="LoRA adapter folder served on top of MODEL_DIR")
    ] = None,
    host: Annotated[str, typer.Option(help="address to bind (loopback by default)")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    api_key: Annotated[
        str | None,
        typer.Option(envvar="FTAGENT_SERVE_API_KEY",
                     help="require 'Authorization: Bearer KEY' on every request but /health"),
    ] = None,
    model_name: Annotated[
        str | None, typer.Option(help="model id clients use (default: the folder's name)")
    ] = None,
    no_batching: Annotated[
        bool, typer.Option("--no-batching", help="one request at a time (the baseline)")
    ] = False,
    max_batch_size: Annotated[int, typer.Option(help="requests decoded together")] = 8,
    batch_wait_ms: Annotated[
        float, typer.Option(help="when idle, how long a request waits for others to join")
    ] = 10.0,
    default_max_tokens: Annotated[
        int, typer.Option(help="tokens per answer when a request does not say")
    ] = 1024,
    bf16: Annotated[bool, typer.Option("--bf16", help="bf16 weights (GPU; CPU is fp32)")] = False,
    threads: Annotated[int, typer.Option(help="torch CPU threads (0: one per core)")] = 0,
    log_level: Annotated[str, typer.Option(help="uvicorn log level")] = "info",
) -> None:
    """Serve /v1/models, /v1/chat/completions and /v1/completions (streaming too), with
    requests batched together as they arrive."""
    from ftagent.tools.models import ModelNotFoundError
    from ftagent.tools.serve.app import ServeSettings, run_server

    if adapter is not None and not adapter.is_dir():
        typer.secho(f"error: adapter folder {adapter} not found", fg="red", err=True)
        raise typer.Exit(2)
    settings = ServeSettings(
        model_dir=model_dir, adapter=str(adapter) if adapter else None, host=host, port=port,
        api_key=api_key, model_name=model_name,
        max_batch_size=1 if no_batching else max_batch_size, batch_wait_ms=batch_wait_ms,
        default_max_tokens=default_max_tokens, bf16=bf16, threads=threads, log_level=log_level,
    )
    try:
        run_server(settings)
    except (ModelNotFoundError, FileNotFoundError, ValueError) as exc:
        typer.secho(f"error: {exc}", fg="red", err=True)
        raise typer.Exit(2) from exc
