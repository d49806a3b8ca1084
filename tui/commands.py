"""Slash commands: the table (name, arguments, help) and a parser. Pure: no Textual, no
engine, so it is unit-tested on its own and the app only dispatches what it returns."""

from __future__ import annotations

import difflib
import shlex
from dataclasses import dataclass, field
from typing import Literal

ArgKind = Literal["positional", "option", "rest"]


@dataclass(frozen=True)
class Arg:
    """One argument: a positional word, a `--flag VALUE` option, or the rest of the line."""

    name: str
    kind: ArgKind = "positional"
    required: bool = True
    metavar: str = ""
    quoted: bool = False  # shown in quotes in the usage ("GOAL")

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")

    def usage(self) -> str:
        meta = self.metavar or self.name.upper()
        text = f'"{meta}"' if self.quoted else meta
        if self.kind == "option":
            text = f"{self.flag} {text}"
        return text if self.required else f"[{text}]"


@dataclass(frozen=True)
class CommandSpec:
    name: str
    help: str
    args: tuple[Arg, ...] = ()

    @property
    def usage(self) -> str:
        return " ".join([f"/{self.name}", *(a.usage() for a in self.args)])

    def option(self, flag: str) -> Arg | None:
        return next((a for a in self.args if a.kind == "option" and a.flag == flag), None)


@dataclass
class ParsedCommand:
    name: str
    args: dict[str, str] = field(default_factory=dict)


class CommandError(ValueError):
    """A one-line message for the person, with the usage when the command is known."""


def _spec(name: str, help: str, *args: Arg) -> CommandSpec:
    return CommandSpec(name, help, args)


# Where a provider's base model is fine-tuned (the command line's flags of the same names):
# an OpenAI-compatible fine-tuning API, and the environment variable that holds its key.
PROVIDER_ARGS = (Arg("provider_url", "option", False, "URL"),
                 Arg("provider_key_env", "option", False, "VAR"))


COMMANDS: dict[str, CommandSpec] = {
    s.name: s
    for s in (
        _spec("workflow:fine-tuning", "plan, prepare data, train, evaluate and deploy; "
              "pauses at each quality gate",
              Arg("goal", quoted=True), Arg("data", "option", False, "PATH"),
              Arg("model", "option", False, "NAME"),
              Arg("max_attempts", "option", False, "N"), *PROVIDER_ARGS),
        _spec("workflow:dataset-engineering", "validate a dataset alone (what `ftagent data "
              "validate` does)", Arg("path", metavar="PATH")),
        _spec("workflow:model-evaluation", "score a base against a tuned model on a test "
              "file (what `ftagent eval` does)",
              Arg("base", "option", metavar="M"), Arg("tuned", "option", metavar="M"),
              Arg("test", "option", metavar="FILE")),
        _spec("plan", "show the current run's plan"),
        _spec("data", "set the data for the next run and check it; alone: the run's data "
              "report", Arg("path", required=False, metavar="PATH")),
        _spec("config", "edit the run's config.yaml (validated on save)"),
        _spec("train", "the run's training result, its gate, or continue the run"),
        _spec("eval", "the run's evaluation, its gate, or continue the run"),
        _spec("deploy", "the run's deployment check, its gate, or continue the run"),
        _spec("serve", "serve the run's merged model on 127.0.0.1 (OpenAI-compatible) until "
              "`/serve stop` or quit", Arg("action", required=False, metavar="stop")),
        _spec("status", "where the current run stands"),
        _spec("runs", "list runs; open or resume one"),
        _spec("resume", "continue a waiting, interrupted or failed run",
              Arg("run_id", metavar="RUN_ID")),
        _spec("approve", "approve the waiting gate"),
        _spec("reject", "reject the waiting gate; the workflow uses your reason",
              Arg("reason", "rest", metavar="REASON")),
        _spec("model", "base model for the next run (name, folder or cached hub id; an "
              "OpenAI model such as gpt-4o-mini-2024-07-18, or any model with "
              "--provider-url, is fine-tuned at that provider)",
              Arg("name", metavar="NAME"), *PROVIDER_ARGS),
        _spec("help", "this list"),
        _spec("clear", "clear the chat"),
        _spec("quit", "leave (a running training job keeps running; resume it later)"),
    )
}


def _usage_error(spec: CommandSpec, problem: str) -> CommandError:
    return CommandError(f"{problem}. Usage: {spec.usage}")


def parse(line: str) -> ParsedCommand:
    """`/name args...` -> ParsedCommand; any problem -> CommandError with one line."""
    text = line.strip()
    if not text.startswith("/"):
        raise CommandError("commands start with '/'; type /help for the list")
    name, _, rest = text[1:].partition(" ")
    name = name.strip().lower()
    spec = COMMANDS.get(name)
    if spec is None:
        close = difflib.get_close_matches(name, COMMANDS, n=1)
        hint = f" Did you mean /{close[0]}?" if close else ""
        raise CommandError(f"unknown command /{name}.{hint} Type /help for the list")
    rest = rest.strip()
    if spec.args and spec.args[0].kind == "rest":
        # The raw text: a reason like "it's too slow" is not shell syntax.
        if len(rest) >= 2 and rest[0] == rest[-1] and rest[0] in "\"'":
            rest = rest[1:-1].strip()
        if not rest:
            raise _usage_error(spec, f"missing {spec.args[0].usage()}")
        return ParsedCommand(name, {spec.args[0].name: rest})
    try:
        words = shlex.split(rest)
    except ValueError as exc:
        raise _usage_error(spec, f"cannot read the arguments ({exc})") from None
    return ParsedCommand(name, _bind(spec, words))


def _bind(spec: CommandSpec, words: list[str]) -> dict[str, str]:
    out: dict[str, str] = {}
    positionals = [a for a in spec.args if a.kind == "positional"]
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("--"):
            flag, eq, value = word.partition("=")
            arg = spec.option(flag)
            if arg is None:
                raise _usage_error(spec, f"unknown option {flag}")
            if not eq:
                if i + 1 >= len(words) or words[i + 1].startswith("--"):
                    raise _usage_error(spec, f"{flag} needs a value")
                i += 1
                value = words[i]
            if arg.name in out:
                raise _usage_error(spec, f"{flag} given twice")
            out[arg.name] = value
        else:
            if not positionals:
                raise _usage_error(spec, f"unexpected argument '{word}'")
            out[positionals.pop(0).name] = word
        i += 1
    missing = [a for a in spec.args if a.required and a.name not in out]
    if missing:
        raise _usage_error(spec, "missing " + ", ".join(a.usage() for a in missing))
    return out


def complete(value: str) -> str | None:
    """The completion the input shows greyed out: a command name from its first letters,
    then the next option of that command not given yet after a trailing `--`."""
    if not value.startswith("/"):
        return None
    head, space, tail = value[1:].partition(" ")
    if not space:
        names = [n for n in COMMANDS if n.startswith(head.lower())]  # table order
        return f"/{names[0]}" if names and names[0] != head.lower() else None
    spec = COMMANDS.get(head.lower())
    if spec is None or not value.endswith("--"):
        return None
    used = set(tail.split())
    for arg in spec.args:
        if arg.kind == "option" and arg.flag not in used:
            return value[:-2] + arg.flag + " "
    return None


def help_markdown() -> str:
    """The /help table: every command with its arguments and what it does."""
    lines = ["| command | what it does |", "|---|---|"]
    for spec in COMMANDS.values():
        usage = spec.usage.replace("|", "\\|")
        lines.append(f"| `{usage}` | {spec.help} |")
    return "\n".join(lines)
