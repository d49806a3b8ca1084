"""`ftagent serve`: an OpenAI-compatible HTTP server for a model or model + adapter.

The options are those of `python -m ftagent.tools.serve`, defined once in
`tools.serve.options`: help and defaults come from there, and `settings_from` refuses a
parameter list that differs from its table. The fine-tuning options are this command's
own (`--fine-tuning` runs workflow runs, which the serving tools know nothing of): they
add OpenAI's files and fine-tuning jobs API (`agent.service.fine_tuning`)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from ftagent.agent.cli.common import fail
from ftagent.tools.serve.options import API_KEY_ENV, DEFAULTS, HELP, settings_from

# This command's own options, not the serving tool's (they start workflow runs)
FINE_TUNING_OPTIONS = ("fine_tuning", "fine_tuning_dir", "fine_tuning_policy", "max_upload_mb")


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
    fine_tuning: Annotated[bool, typer.Option(
        "--fine-tuning", help="also serve OpenAI's files and fine-tuning jobs API: each job "
        "is a workflow run on the uploaded data, its model served as ft:... when it ends "
        "(needs --api-key)")] = False,
    fine_tuning_dir: Annotated[Path | None, typer.Option(
        help="where jobs and files live (default: $FTAGENT_HOME/fine_tuning)")] = None,
    fine_tuning_policy: Annotated[Path | None, typer.Option(
        help="policy file that decides the jobs' gates (default: approve each gate whose "
        "automatic check passed)")] = None,
    max_upload_mb: Annotated[int, typer.Option(
        min=1, help="largest file POST /v1/files accepts, in MB")] = 512,
) -> None:
    """Serve /v1/models, /v1/chat/completions and /v1/completions (streaming too), with
    requests batched together as they arrive; with --fine-tuning, OpenAI's fine-tuning
    API too."""
    options = dict(locals())  # exactly the parameters: settings_from checks them
    for name in FINE_TUNING_OPTIONS:
        options.pop(name)
    from ftagent.tools.models import ModelNotFoundError
    from ftagent.tools.serve.app import run_server

    if adapter is not None and not adapter.is_dir():
        raise fail(f"adapter folder {adapter} not found")
    settings = settings_from(options | {"adapter": str(adapter) if adapter else None})
    extensions = []
    if fine_tuning:
        extensions.append(_fine_tuning(settings, fine_tuning_dir, fine_tuning_policy,
                                       max_upload_mb))
    try:
        run_server(settings, extensions)
    except (ModelNotFoundError, FileNotFoundError, ValueError) as exc:
        raise fail(str(exc)) from exc


def _fine_tuning(settings, folder: Path | None, policy: Path | None, max_upload_mb: int):
    """The fine-tuning API's extension, after the checks that must hold before a server
    that trains on request starts: a key (even on loopback: a job runs work on this
    machine), no start-up adapter (jobs train the base), a policy file that loads."""
    from ftagent.agent.service.fine_tuning.routes import fine_tuning_extension
    from ftagent.agent.service.policy import PolicyError, load_policy
    from ftagent.tools.paths import ftagent_home

    if not settings.api_key:
        raise fail(f"--fine-tuning needs an API key (--api-key or ${API_KEY_ENV}): the "
                   "fine-tuning endpoints start training on this machine, so they are never "
                   "open, not even on loopback")
    if settings.adapter:
        raise fail("--fine-tuning trains the base model: serve it without --adapter")
    if policy is not None:
        try:
            load_policy(policy)
        except PolicyError as exc:
            raise fail(str(exc)) from None
        policy = policy.resolve()
    root = folder or ftagent_home() / "fine_tuning"
    return fine_tuning_extension(root, settings.model_dir, policy, max_upload_mb)
