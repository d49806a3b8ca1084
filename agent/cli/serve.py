"""`ftagent serve`: an OpenAI-compatible HTTP server for a model or model + adapter.

The options are those of `python -m ftagent.tools.serve`, defined once in
`tools.serve.options`: help and defaults come from there, and `settings_from` refuses a
parameter list that differs from its table."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from ftagent.agent.cli.common import fail
from ftagent.tools.serve.options import API_KEY_ENV, DEFAULTS, HELP, settings_from


def serve_command(
    model_dir: Annotated[str, typer.Argument(help=HELP["model_dir"])],
    adapter: Annotated[Path | None, typer.Option(help=HELP["adapter"])] = None,
    host: Annotated[str, typer.Option(help=HELP["host"])] = DEFAULTS.host,
    port: Annotated[int, typer.Option(help=HELP["port"])] = DEFAULTS.port,
    api_key: Annotated[
        str | None, typer.Option(envvar=API_KEY_ENV, help=HELP["api_key"])
    ] = DEFAULTS.api_key,
    model_name: Annotated[str | None, typer.Option(help=HELP["model_name"])] = None,
    no_batching: Annotated[
        bool, typer.Option("--no-batching", help=HELP["no_batching"])
    ] = False,
    max_batch_size: Annotated[
        int, typer.Option(help=HELP["max_batch_size"])
    ] = DEFAULTS.max_batch_size,
    batch_wait_ms: Annotated[
        float, typer.Option(help=HELP["batch_wait_ms"])
    ] = DEFAULTS.batch_wait_ms,
    default_max_tokens: Annotated[
        int, typer.Option(help=HELP["default_max_tokens"])
    ] = DEFAULTS.default_max_tokens,
    bf16: Annotated[bool, typer.Option("--bf16", help=HELP["bf16"])] = DEFAULTS.bf16,
    threads: Annotated[int, typer.Option(help=HELP["threads"])] = DEFAULTS.threads,
    log_level: Annotated[str, typer.Option(help=HELP["log_level"])] = DEFAULTS.log_level,
) -> None:
    """Serve /v1/models, /v1/chat/completions and /v1/completions (streaming too), with
    requests batched together as they arrive."""
    options = dict(locals())  # exactly the parameters: settings_from checks them
    from ftagent.tools.models import ModelNotFoundError
    from ftagent.tools.serve.app import run_server

    if adapter is not None and not adapter.is_dir():
        raise fail(f"adapter folder {adapter} not found")
    settings = settings_from(options | {"adapter": str(adapter) if adapter else None})
    try:
        run_server(settings)
    except (ModelNotFoundError, FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from exc
