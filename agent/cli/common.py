"""What every `ftagent` command shares: its exit codes and the one way to fail."""

from __future__ import annotations

import typer

# Workflow commands (run, resume, train, merge, export, eval).
EXIT_FAILED, EXIT_BAD_INPUT, EXIT_WAITING, EXIT_REJECTED = 1, 2, 3, 4
# Checks (data validate, config validate): warnings only, or errors found.
EXIT_WARNINGS, EXIT_ERRORS = 1, 2


def fail(message: str, code: int = EXIT_BAD_INPUT) -> typer.Exit:
    """Print `error: message` in red on stderr; the caller raises the returned Exit, so a
    command reads `raise fail(...)` and type checkers see that it does not return."""
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(code)
