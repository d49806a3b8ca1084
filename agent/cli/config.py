"""`ftagent config ...`: show, validate and explain training configs, and translate them
from and to LLaMA-Factory, Axolotl and OpenAI fine-tuning jobs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from ftagent.agent.cli.chat import llm_command
from ftagent.agent.cli.common import EXIT_ERRORS, EXIT_WARNINGS, fail

app = typer.Typer(
    help="Show, validate, explain, import and export training configs.", no_args_is_help=True
)

ConfigPath = Annotated[Path, typer.Argument(help="an ftagent config YAML")]
ForceOpt = Annotated[bool, typer.Option("--force", help="overwrite existing files")]



def _load(path: Path):
    from ftagent.tools.config.train_config import load_config

    if not path.is_file():
        raise fail(f"{path}: file not found")
    try:
        return load_config(path)
    except ValueError as exc:
        raise fail(str(exc)) from None


@app.command()
def show(path: ConfigPath, as_json: Annotated[bool, typer.Option("--json")] = False) -> None:
    """The config with every field resolved and its help text as a comment (or JSON)."""
    from ftagent.tools.config.train_config import dump_yaml

    cfg = _load(path)
    typer.echo(cfg.model_dump_json(indent=2) if as_json else dump_yaml(cfg), nl=as_json)


def _model_config(name: str) -> tuple[dict | None, str]:
    """The base model's config.json where it is on this machine, else the registry's card;
    a bundled model not yet converted is read from the registry (no conversion here)."""
    from ftagent.tools.config.check import registry_model_config
    from ftagent.tools.models import BUNDLED_ALIASES, ModelNotFoundError, resolve_model
    from ftagent.tools.paths import models_cache_dir

    folder = models_cache_dir() / "smollm2-135m-instruct"
    if name.strip().lower() not in BUNDLED_ALIASES or (folder / "config.json").is_file():
        try:
            resolved = resolve_model(name)
            cfg_file = resolved.path / "config.json"
            return json.loads(cfg_file.read_text(encoding="utf-8")), str(cfg_file)
        except (ModelNotFoundError, OSError, ValueError):
            pass
    card = registry_model_config(name)
    return card, ("the model registry" if card else "")


def _print_findings(findings: list) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table()
    for col in ("severity", "field", "problem", "what to do"):
        table.add_column(col, overflow="fold")
    for f in findings:
        color = "red" if f.severity == "error" else "yellow"
        table.add_row(f"[{color}]{f.severity}[/]", f.field, f.message, f.action)
    Console().print(table)


@app.command()
def validate(
    path: ConfigPath,
    strict: Annotated[bool, typer.Option(help="exit 1 on warnings")] = False,
    memory_budget: Annotated[
        float | None, typer.Option("--memory-budget", help="GB available for training")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="findings as JSON")] = False,
) -> None:
    """Types, then settings that load but train badly on this model. Exit 0 clean, 1
    warnings (with --strict), 2 errors."""
    from ftagent.tools.config.check import check_config
    from ftagent.tools.data.tokens import train_file_facts

    cfg = _load(path)
    model_config, origin = _model_config(cfg.model)
    tokens = (train_file_facts(cfg.train_file, cfg.model)
              if memory_budget and model_config and Path(cfg.train_file).is_file() else None)
    findings = check_config(cfg, model_config, memory_budget, tokens=tokens)
    if as_json:
        typer.echo(json.dumps([f.model_dump() for f in findings], indent=2))
    else:
        where = f"shape from {origin}" if origin else "not on this machine: model checks skipped"
        typer.echo(f"model: {cfg.model} ({where})")
        if findings:
            _print_findings(findings)
        else:
            typer.secho(f"{path}: no problems found", fg="green")
    if any(f.severity == "error" for f in findings):
        raise typer.Exit(EXIT_ERRORS)
    if findings and strict:
        raise typer.Exit(EXIT_WARNINGS)


def _fields() -> dict[str, Any]:
    """Every config key, dotted for sections (`lora.r`), with its pydantic FieldInfo."""
    from ftagent.tools.config.train_config import TrainConfig
    from pydantic import BaseModel

    out: dict[str, Any] = {}
    for name, info in TrainConfig.model_fields.items():
        out[name] = info
        sub = info.annotation
        if isinstance(sub, type) and issubclass(sub, BaseModel):
            out |= {f"{name}.{k}": v for k, v in sub.model_fields.items()}
    return out


def _type_name(annotation: Any) -> str:
    name = getattr(annotation, "__name__", None)
    return name if isinstance(annotation, type) and name else str(annotation).replace(
        "typing.", "")


def _allowed(annotation: Any) -> list:
    """Values of any Literal in the annotation (also inside unions)."""
    from typing import Literal, get_args, get_origin

    if get_origin(annotation) is Literal:
        return list(get_args(annotation))
    return [v for arg in get_args(annotation) for v in _allowed(arg)]


def _limits(info: Any) -> str:
    signs = {"ge": ">=", "gt": ">", "le": "<=", "lt": "<"}
    return ", ".join(f"{sign} {getattr(m, attr)}" for m in info.metadata
                     for attr, sign in signs.items() if hasattr(m, attr))


def _default(info: Any) -> Any:
    from pydantic import BaseModel

    if info.default_factory is not None:
        value = info.default_factory()
        return "(section)" if isinstance(value, BaseModel) else value
    return "(required)" if info.is_required() else info.default


@app.command()
def explain(key: Annotated[str, typer.Argument(help="a config key, e.g. lora.r")]) -> None:
    """A field's help text, type, default and allowed values."""
    import difflib

    fields = _fields()
    info = fields.get(key)
    if info is None:
        leaf = [k for k in fields if k.rsplit(".", 1)[-1] == key]
        close = leaf + [k for k in difflib.get_close_matches(key, fields, n=4, cutoff=0.5)
                        if k not in leaf]
        hint = f"; did you mean {', '.join(close)}?" if close else ""
        raise fail(f"unknown config key '{key}'{hint}")
    typer.secho(key, bold=True)
    typer.echo(f"  {info.description or ''}")
    typer.echo(f"  type:    {_type_name(info.annotation)}")
    typer.echo(f"  default: {_default(info)}")
    if allowed := _allowed(info.annotation):
        typer.echo(f"  allowed: {', '.join(map(str, allowed))}")
    if limits := _limits(info):
        typer.echo(f"  range:   {limits}")
    subkeys = [k for k in fields if k.startswith(f"{key}.")]
    if subkeys:
        typer.echo(f"  keys:    {', '.join(subkeys)}")


def _check_free(path: Path, force: bool) -> None:
    if path.exists() and not force:
        raise fail(f"{path} exists; pass --force to overwrite it")


@app.command("import")
def import_config(
    src: Annotated[Path, typer.Argument(help="LLaMA-Factory/Axolotl YAML or OpenAI job JSON")],
    out: Annotated[Path, typer.Option("--out", help="ftagent config YAML to write")],
    fmt: Annotated[
        str | None, typer.Option("--from", help="llamafactory | axolotl | openai")
    ] = None,
    model: Annotated[str | None, typer.Option(help="base model to use instead")] = None,
    data_out: Annotated[
        Path | None, typer.Option(help="OpenAI jobs: folder for train.jsonl/val.jsonl")
    ] = None,
    force: ForceOpt = False,
) -> None:
    """Translate another tool's training config to an ftagent config; prints what did not
    translate."""
    from ftagent.tools.config.imported import ConfigImportError
    from ftagent.tools.config.train_config import save_config
    from ftagent.tools.config.translate import FORMATS, convert, detect_format, read_foreign

    _check_free(out, force)
    if fmt and fmt not in FORMATS:
        raise fail(f"--from '{fmt}': choose one of {', '.join(FORMATS)}")
    try:
        data = read_foreign(src)
        fmt = fmt or detect_format(data, str(src))
        data_out = data_out or out.parent / f"{out.stem}-data"
        if fmt == "openai":
            for name in ("train.jsonl", "val.jsonl"):
                _check_free(data_out / name, force)
        result = convert(data, fmt, str(src), model, data_out)
    except ConfigImportError as exc:
        raise fail(str(exc)) from None
    save_config(result.config, out, header=f"imported from {src} ({fmt}) by ftagent config "
                "import\nreview the notes it printed, then: ftagent config validate " + str(out))
    for note in result.notes:
        typer.secho(f"note: {note}", fg="yellow")
    for key in result.ignored:
        typer.echo(f"ignored: {key} (no ftagent equivalent)")
    typer.secho(f"wrote {out} (from {fmt}); check it with: ftagent config validate {out}",
                fg="green")


@app.command()
def export(
    path: ConfigPath,
    to: Annotated[str, typer.Option("--to", help="llamafactory | axolotl")],
    out: Annotated[Path, typer.Option("--out", help="YAML file to write")],
    force: ForceOpt = False,
) -> None:
    """Write an ftagent config as a LLaMA-Factory or Axolotl YAML."""
    import yaml
    from ftagent.tools.atomic import write_text
    from ftagent.tools.config.axolotl import to_axolotl
    from ftagent.tools.config.llamafactory import llamafactory_dataset_info, to_llamafactory
    from ftagent.tools.config.translate import export_notes

    writers = {"llamafactory": to_llamafactory, "axolotl": to_axolotl}
    if to not in writers:
        raise fail(f"--to '{to}': choose one of {', '.join(writers)}")
    _check_free(out, force)
    cfg = _load(path)
    header = f"# exported from {path} by ftagent config export\n"
    write_text(out, header + yaml.safe_dump(writers[to](cfg), sort_keys=False))
    for note in export_notes(cfg, to):
        typer.secho(f"note: {note}", fg="yellow")
    if to == "llamafactory":
        typer.echo(json.dumps(llamafactory_dataset_info(cfg), indent=2))
    typer.secho(f"wrote {out} ({to})", fg="green")


if __name__ == "__main__":
    app()


app.command("llm")(llm_command)
