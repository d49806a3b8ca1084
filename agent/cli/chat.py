"""`ftagent chat` (a line-oriented REPL), `ftagent ask "question"` (one answer) and
`ftagent config llm` (which LLM the assistant uses)."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer
from ftagent.agent.cli.common import fail


def _assistant(runs_dir: Path | None, run: str | None, thread: str | None = None,
               as_json: bool = False):
    from ftagent.agent.chat.assistant import Assistant
    from ftagent.agent.chat.llm import load_settings
    from ftagent.agent.chat.tools import ChatContext
    from ftagent.agent.cli.console import EventPrinter
    from ftagent.tools.paths import default_runs_dir

    ctx = ChatContext(runs_root=runs_dir or default_runs_dir(), on_event=EventPrinter(as_json))
    if run:
        from ftagent.agent.service.runs import RunError, find_run_or_folder

        try:
            ctx.run_dir = find_run_or_folder(run, ctx.runs_root)
        except RunError as exc:
            raise fail(str(exc)) from None
    return Assistant(ctx, load_settings(), thread_id=thread)


RunsOpt = Annotated[Path | None, typer.Option(help="runs folder (default: ./runs)")]
RunOpt = Annotated[str | None, typer.Option(help="continue the conversation about this run")]
ThreadOpt = Annotated[str | None, typer.Option(
    help="continue this conversation (kept in $FTAGENT_HOME/chat/conversations.sqlite)")]


def _say(pieces) -> None:
    for piece in pieces:
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")


def _confirm_pending(bot) -> bool:
    """The chat is paused on a proposal: ask the person; only their "y" applies it.
    False when they left without answering (it stays pending in the conversation)."""
    from ftagent.agent.chat.graph import proposal_markdown

    while (proposal := bot.pending) is not None:
        typer.echo(proposal_markdown(proposal))
        try:
            said = input("apply? [y/N] ").strip()
        except (EOFError, KeyboardInterrupt):
            typer.echo("")
            return False
        sys.stdout.write("ftagent> ")
        _say(bot.resume(said.lower() in ("y", "yes"), said or "no"))
    return True


def chat_command(runs_dir: RunsOpt = None, run: RunOpt = None,
                 thread: ThreadOpt = None) -> None:
    """Talk to the assistant: start and steer a workflow, answer gates, ask questions.
    Works with no LLM (commands and the knowledge base), a local model, or any
    OpenAI-compatible endpoint (`ftagent config llm`)."""
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    bot = _assistant(runs_dir, run, thread)
    typer.echo(f"ftagent chat — LLM: {bot.settings.describe()}. Type 'help', or 'quit' to "
               f"leave. Conversation {bot.thread_id} (continue it with --thread "
               f"{bot.thread_id}).")
    while True:
        if not _confirm_pending(bot):
            return
        try:
            line = input("you> ").strip()
        except (EOFError, KeyboardInterrupt):
            typer.echo("")
            return
        if line.lower() in ("quit", "exit", "/quit", ":q"):
            return
        if not line:
            continue
        sys.stdout.write("ftagent> ")
        _say(bot.reply(line))


def ask_command(
    question: Annotated[str, typer.Argument(help="a question or a request")],
    runs_dir: RunsOpt = None,
    run: RunOpt = None,
    thread: ThreadOpt = None,
) -> None:
    """One answer (or one action) and exit; --thread continues a conversation."""
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    bot = _assistant(runs_dir, run, thread)
    _say(bot.reply(question))
    if bot.pending is not None:
        typer.echo(f"(a proposal waits for you: ftagent ask --thread {bot.thread_id} yes, "
                   "or no)")
    typer.echo(f"conversation: {bot.thread_id}", err=True)


def llm_command(
    backend: Annotated[str | None, typer.Option(help="none | openai | local")] = None,
    base_url: Annotated[str | None, typer.Option(help="OpenAI-compatible base URL")] = None,
    model: Annotated[str | None, typer.Option(help="model name (or local model)")] = None,
    api_key_env: Annotated[str | None, typer.Option(
        help="environment variable that holds the key")] = None,
    share_rows: Annotated[bool | None, typer.Option(
        "--share-rows/--no-share-rows",
        help="let a remote endpoint see quotes of your data rows (rows flagged as personal "
        "data or secrets never leave the machine)")] = None,
    check: Annotated[bool, typer.Option(help="send one short request to test it")] = False,
) -> None:
    """Show or change which LLM the assistant uses (saved in $FTAGENT_HOME/llm.yaml; keys
    stay in the environment)."""
    from ftagent.agent.chat.llm import LLMSettings, LLMUnavailable, load_settings, save_settings
    from ftagent.agent.chat.llm import check as check_llm
    from pydantic import ValidationError

    s = load_settings()
    changes = {k: v for k, v in (("backend", backend), ("base_url", base_url),
                                 ("model", model), ("api_key_env", api_key_env)) if v}
    if share_rows is not None:
        changes["share_rows"] = share_rows
    if changes:
        try:
            s = LLMSettings.model_validate({**s.model_dump(), **changes})
        except ValidationError as exc:
            raise fail(f"{exc.errors()[0]['loc'][0]}: {exc.errors()[0]['msg']}") from None
        typer.echo(f"saved {save_settings(s)}")
    typer.echo(f"LLM: {s.describe()}")
    if check:
        try:
            typer.echo(f"check: it answered {check_llm(s)!r}")
        except LLMUnavailable as exc:
            typer.secho(f"check failed: {exc}", fg="red", err=True)
            raise typer.Exit(1) from None
