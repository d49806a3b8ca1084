"""The `ftagent` command: the terminal app when called alone, the command line otherwise.

It sits above both: the agent never imports Textual, so the one place that knows the
command line and the app is here, outside them. Textual loads only when the app opens.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ftagent.agent.cli.main import app


@app.command("tui")
def tui_command(
    runs_dir: Annotated[
        Path | None, typer.Option(help="runs folder (default: $FTAGENT_RUNS_DIR or ./runs)")
    ] = None,
) -> None:
    """Open the terminal app (what `ftagent` with no arguments does)."""
    from ftagent.tui.app import run_app

    raise typer.Exit(run_app(runs_dir))


def main() -> None:
    import sys

    if len(sys.argv) <= 1:  # `ftagent` alone opens the terminal app
        from ftagent.tui.app import run_app

        raise SystemExit(run_app())
    app()
