"""Where ftagent keeps user state: one environment variable moves all of it."""

from __future__ import annotations

import os
from pathlib import Path

HOME_ENV = "FTAGENT_HOME"


def ftagent_home() -> Path:
    """`$FTAGENT_HOME`, else the platform's user cache dir (e.g. ~/.cache/ftagent)."""
    env = os.environ.get(HOME_ENV)
    if env:
        return Path(env).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ftagent"))


def models_cache_dir() -> Path:
    return ftagent_home() / "models"


def default_runs_dir() -> Path:
    """Runs live in ./runs of the working directory unless told otherwise."""
    return Path(os.environ.get("FTAGENT_RUNS_DIR", "runs"))


def import_root() -> Path:
    """The folder a child process needs on its path to import `ftagent` as this one does:
    the checkout (where an editable install's finder maps the rest) or site-packages."""
    import ftagent

    return Path(ftagent.__file__).resolve().parents[1]
