"""The server's options, defined once. `python -m ftagent.tools.serve` builds its argparse
parser from `OPTIONS`; `ftagent serve` (typer, in the agent) takes its help and defaults
from the same table, and both turn what they parsed into `ServeSettings` through
`settings_from`, which refuses a set of options that differs from the table. So the two
entry points cannot drift apart, and an option added in one place fails loudly in the
other. No heavy imports: the CLI reads this module to print its help.
"""

from __future__ import annotations

import argparse
import os
from dataclasses import dataclass, fields

API_KEY_ENV = "FTAGENT_SERVE_API_KEY"  # so the key need not appear in `ps`
DEFAULT_MAX_TOKENS = 1024  # a chat request without max_tokens: at most this, or what fits


@dataclass
class ServeSettings:
    """What `run_server` needs, the same whichever CLI parsed it."""

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


DEFAULTS = ServeSettings(model_dir="")  # what an option left out means, for both CLIs


@dataclass(frozen=True)
class ServeOption:
    """One command-line option: `name` is its ServeSettings field (the flag is the name
    with dashes); a `switch` takes no value."""

    name: str
    help: str
    switch: bool = False


OPTIONS: tuple[ServeOption, ...] = (
    ServeOption("model_dir", "model folder, or the bundled name smollm2-135m-instruct"),
    ServeOption("adapter", "LoRA adapter folder served on top of MODEL_DIR"),
    ServeOption("host", "address to bind (loopback by default)"),
    ServeOption("port", "TCP port"),
    ServeOption("api_key", "require 'Authorization: Bearer KEY' on every request but /health"),
    ServeOption("model_name", "model id clients use (default: the folder's name)"),
    # not a setting of its own: it sets max_batch_size to 1
    ServeOption("no_batching", "one request at a time (the baseline)", switch=True),
    ServeOption("max_batch_size", "requests decoded together"),
    ServeOption("batch_wait_ms", "when idle, how long a request waits for others to join"),
    ServeOption("default_max_tokens", "tokens per answer when a request does not say"),
    ServeOption("bf16", "bf16 weights (GPU; CPU is fp32)", switch=True),
    ServeOption("threads", "torch CPU threads (0: one per core)"),
    ServeOption("log_level", "uvicorn log level"),
)
HELP = {o.name: o.help for o in OPTIONS}


def settings_from(values: dict) -> ServeSettings:
    """Settings from parsed options, named as in `OPTIONS`. Exactly the table's options
    are accepted, so a CLI that forgot one, or added one of its own, fails here."""
    if set(values) != set(HELP):
        extra, missing = sorted(set(values) - set(HELP)), sorted(set(HELP) - set(values))
        raise ValueError(f"serve options differ from tools.serve.options.OPTIONS: "
                         f"unknown {extra}, missing {missing}")
    values = dict(values)
    if values.pop("no_batching"):
        values["max_batch_size"] = 1
    return ServeSettings(**values)


def build_parser(prog: str, description: str) -> argparse.ArgumentParser:
    """The argparse parser of `python -m ftagent.tools.serve`, one argument per option."""
    ap = argparse.ArgumentParser(prog=prog, description=description)
    defaults = {f.name: getattr(DEFAULTS, f.name) for f in fields(ServeSettings)}
    for opt in OPTIONS:
        flag = "--" + opt.name.replace("_", "-")
        if opt.name == "model_dir":
            ap.add_argument("model_dir", help=opt.help)
        elif opt.switch:
            ap.add_argument(flag, action="store_true", help=opt.help)
        elif opt.name == "api_key":  # read when parsing starts, as the typer CLI does
            ap.add_argument(flag, default=os.environ.get(API_KEY_ENV),
                            help=f"{opt.help} (default: ${API_KEY_ENV})")
        else:
            default = defaults[opt.name]
            ap.add_argument(flag, type=str if default is None else type(default),
                            default=default, help=opt.help)
    return ap
