"""`ftagent data ...`: the data tool on its own (inspect, validate, prepare)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from ftagent.agent.cli.common import EXIT_ERRORS, EXIT_WARNINGS, fail

app = typer.Typer(help="Inspect, validate and prepare fine-tuning datasets.", no_args_is_help=True)

Paths = Annotated[
    list[str],
    typer.Argument(
        help="files, folders or globs (JSONL, JSON, CSV, TSV, Parquet, saved datasets folder)"
    ),
]
ModelOpt = Annotated[str, typer.Option(help="base model whose tokenizer counts tokens")]
SchemaOpt = Annotated[str | None, typer.Option("--schema", help="override schema detection")]
ColumnOpt = Annotated[
    list[str] | None,
    typer.Option("--column", help="map a field: ROLE=FIELD (text, label, prompt, completion, ...)"),
]
MaxLenOpt = Annotated[int, typer.Option(help="max tokens per example")]
NearDupOpt = Annotated[float, typer.Option(help="MinHash Jaccard threshold; 0 turns it off")]



def _options(model, schema, column, max_length=1024, near_dup=0.85, **extra):
    from ftagent.tools.data import PrepareOptions

    cols = {}
    for item in column or []:
        role, sep, name = item.partition("=")
        if not sep:
            raise fail(f"--column expects ROLE=FIELD, got '{item}'")
        cols[role.strip()] = name.strip()
    return PrepareOptions(
        model=model or None,
        schema_name=schema,
        columns=cols,
        max_length=max_length,
        near_dup_threshold=near_dup or None,
        **extra,
    )


def _run(fn, *args):
    from ftagent.tools.data import DataError
    from ftagent.tools.models import ModelNotFoundError

    try:
        return fn(*args)
    except (DataError, ModelNotFoundError) as exc:
        raise fail(str(exc)) from None


def _print_report(report) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    console.print(
        f"[bold]{report.source}[/]: {report.rows_read} rows, schema "
        f"[cyan]{report.schema_detail}[/], task {report.task_type}, "
        f"{report.kept} examples kept"
    )
    table = Table(show_lines=False)
    for col in ("check", "severity", "count", "examples", "action"):
        table.add_column(col, overflow="fold")
    for c in report.checks:
        if c.count:
            color = "red" if c.severity == "error" else "yellow"
            table.add_row(
                c.name,
                f"[{color}]{c.severity}[/]",
                str(c.count),
                "; ".join(c.examples[:3]),
                c.action,
            )
    if table.row_count:
        console.print(table)
    clean = [c.name for c in report.checks if not c.count]
    console.print(f"[green]clean:[/] {', '.join(clean)}")
    if report.token_lengths:
        console.print(
            "tokens: "
            + ", ".join(f"{k} {v}" for k, v in report.token_lengths.items())
            + f" (max length {report.max_length})"
        )
    if report.safety_mix:
        from ftagent.tools.data.report import mix_summary

        console.print(f"safety mix: {mix_summary(report.safety_mix)}")


@app.command()
def inspect(
    paths: Paths,
    model: ModelOpt = "smollm2-135m-instruct",
    schema: SchemaOpt = None,
    column: ColumnOpt = None,
    rows: int = 3,
) -> None:
    """Format and schema detection, sample rows and a token-length histogram."""
    import json

    from ftagent.tools.data.prepare import _tokenizer, analyze
    from ftagent.tools.data.readers import expand_paths, file_kind
    from rich.console import Console

    console = Console()
    opts = _options(model, schema, column, near_dup=0)
    for p in _run(expand_paths, paths):
        console.print(f"[bold]{p}[/]: {file_kind(p)}")
    a, report = _run(lambda: analyze(paths, opts, _tokenizer(opts)))
    console.print(f"schema: [cyan]{report.schema_detail}[/]  votes: {report.schema_votes}")
    for item in a.kept[:rows]:
        console.print(f"[dim]{item.ref}[/] " + json.dumps(item.example, ensure_ascii=False)[:400])
    if report.token_histogram:
        peak = max(c for _, _, c in report.token_histogram) or 1
        console.print("token lengths (chat template):")
        for low, high, count in report.token_histogram:
            console.print(f"  {low:>6}-{high:<6} {'█' * round(30 * count / peak):<30} {count}")


@app.command()
def validate(
    paths: Paths,
    model: ModelOpt = "smollm2-135m-instruct",
    max_length: MaxLenOpt = 1024,
    near_dup_threshold: NearDupOpt = 0.85,
    schema: SchemaOpt = None,
    column: ColumnOpt = None,
    format: Annotated[str, typer.Option(help="table | json | md")] = "table",
    strict: Annotated[bool, typer.Option(help="exit 1 when there are warnings")] = False,
) -> None:
    """Check a dataset; exit 0 clean, 1 warnings (with --strict), 2 errors."""
    from ftagent.tools.data import validate_dataset
    from ftagent.tools.data.report import to_markdown

    opts = _options(model, schema, column, max_length, near_dup_threshold)
    report = _run(validate_dataset, paths, opts)
    if format == "json":
        typer.echo(report.model_dump_json(indent=2))
    elif format == "md":
        typer.echo(to_markdown(report))
    else:
        _print_report(report)
    if report.errors:
        raise typer.Exit(EXIT_ERRORS)
    if strict and any(c.count for c in report.checks):
        raise typer.Exit(EXIT_WARNINGS)


@app.command()
def prepare(
    paths: Paths,
    out: Annotated[Path, typer.Option(help="output folder (must not hold a prepared dataset)")],
    model: ModelOpt = "smollm2-135m-instruct",
    max_length: MaxLenOpt = 1024,
    truncate: Annotated[
        bool, typer.Option(help="truncate over-long examples instead of dropping them")
    ] = False,
    near_dup_threshold: NearDupOpt = 0.85,
    schema: SchemaOpt = None,
    column: ColumnOpt = None,
    seed: int = 42,
    val_fraction: float = 0.1,
    test_fraction: float = 0.1,
    test_file: Annotated[str | None, typer.Option(help="your own test set, used as is")] = None,
    safety_mix: Annotated[
        float, typer.Option(min=0.0, max=1.0, help="safety rows added to the training split of "
                            "chat/generation data, as a share of it; 0 turns it off")
    ] = 0.6,  # tools.plan.decide.SAFETY_MIX, as a workflow run plans it
) -> None:
    """Fix on a copy, split (stratified, near-duplicate groups kept together) and report.
    Chat and generation data get the safety mix in their training split (refusals and
    look-alikes answered by --model; tools/data/safety_mix.py)."""
    from ftagent.tools.data import prepare_dataset
    from ftagent.tools.data.safety_mix import mix_into_split
    from ftagent.tools.models import resolve_model

    if (out / "report.json").exists():
        raise fail(f"{out} already holds a prepared dataset; pick another --out")
    opts = _options(
        model,
        schema,
        column,
        max_length,
        near_dup_threshold,
        seed=seed,
        val_fraction=val_fraction,
        test_fraction=test_fraction,
        test_file=test_file,
        overlong="truncate" if truncate else "drop",
    )
    report = _run(prepare_dataset, paths, out, opts)
    if safety_mix > 0 and report.task_type == "generation":
        report = mix_into_split(report, out, _run(resolve_model, model).path, safety_mix)
    _print_report(report)
    typer.echo(
        "splits: " + ", ".join(f"{k} {v}" for k, v in report.splits.items()) + f"; written to {out}"
    )


# The teacher's commands live in their own module; they are data commands to the user.
from ftagent.agent.cli.teacher import augment, distill, synth  # noqa: E402

app.command()(distill)
app.command()(synth)
app.command()(augment)
