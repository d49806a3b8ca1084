"""`ftagent data distill|synth|augment`: a teacher model writes answers or examples."""

from __future__ import annotations

import json
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated

import typer
from ftagent.agent.cli.common import fail

TeacherOpt = Annotated[
    str | None, typer.Option("--teacher", help="teacher: endpoint model name or local folder")]
UrlOpt = Annotated[str | None, typer.Option(
    "--teacher-url", help="OpenAI-compatible base URL, e.g. http://127.0.0.1:8000/v1")]
ConfigOpt = Annotated[Path | None, typer.Option(
    "--teacher-config", help="YAML of teacher settings (key env, rate limit, prices, ...)")]
OutOpt = Annotated[Path, typer.Option("--out", help="folder for the generated files")]
CacheOpt = Annotated[Path | None, typer.Option(
    help="answer cache (default: $FTAGENT_HOME/teacher/answers.sqlite)")]
YesOpt = Annotated[bool, typer.Option("--yes", help="start without asking about the cost")]


def teacher_settings(teacher, url, config):
    from ftagent.tools.teacher.settings import TeacherConfigError, load_teacher

    if not teacher and not config:
        raise fail("name a teacher: --teacher MODEL [--teacher-url URL] or --teacher-config")
    try:
        return load_teacher(teacher, url, config)
    except TeacherConfigError as exc:
        raise fail(str(exc)) from None


@contextmanager
def _progress(label: str, errors: tuple = ()):
    """A rich progress bar on stderr for the teacher's work; yields the callback. `errors`
    (TeacherError and the like) become a one-line `error:` and a non-zero exit."""
    from ftagent.tools.teacher.generate import TeacherError
    from rich.console import Console
    from rich.progress import Progress

    progress = Progress(console=Console(stderr=True), transient=True)
    task = progress.add_task(label, total=None)
    progress.start()
    try:
        yield lambda done, total: progress.update(task, completed=done, total=total)
    except (TeacherError, *errors) as exc:
        raise fail(str(exc)) from None
    finally:
        progress.stop()


def _confirm_cost(est: dict, yes: bool) -> None:
    typer.echo(f"teacher {est['teacher']}: {est['prompts']} prompts, {est['cached']} cached, "
               f"{est['requests']} requests, ~{est['prompt_tokens']:,} prompt tokens, at most "
               f"{est['answer_tokens_at_most']:,} answer tokens, at most "
               f"${est['cost_usd_at_most']:.4f}")
    if est["cost_usd_at_most"] > 0 and not yes and not typer.confirm("start?", default=False):
        raise typer.Exit(1)


def distill(
    prompts: Annotated[Path, typer.Argument(help="prompt-only rows, or chat rows to re-answer")],
    out: OutOpt,
    teacher: TeacherOpt = None,
    teacher_url: UrlOpt = None,
    teacher_config: ConfigOpt = None,
    labels: Annotated[str | None, typer.Option(
        help="comma-separated classes; default: read from a system prompt listing them")] = None,
    cache: CacheOpt = None,
    yes: YesOpt = False,
) -> None:
    """The teacher answers every prompt: a chat JSONL to train the student on, and the
    rows set aside with their reasons."""
    from ftagent.tools.teacher.cache import AnswerCache
    from ftagent.tools.teacher.distill import PromptError, distill, estimate, read_prompts, summary
    from ftagent.tools.teacher.settings import default_cache

    s = teacher_settings(teacher, teacher_url, teacher_config)
    cache = cache or default_cache()
    try:
        rows = read_prompts(prompts)
    except (PromptError, OSError) as exc:
        raise fail(str(exc)) from None
    c = AnswerCache(cache)
    _confirm_cost(estimate(s, [p for _, p in rows], c), yes)
    c.close()
    with _progress("teacher answers") as update:
        report = distill(prompts, out, s, cache,
                         labels=[x.strip() for x in labels.split(",")] if labels else None,
                         on_progress=update)
    typer.echo(summary(report))
    typer.echo(f"wrote {report['generated']} and {report['rejected_file']}")


def synth(
    seeds: Annotated[Path, typer.Argument(help="a few example rows of the task (any format)")],
    task: Annotated[str, typer.Option(help="what the examples should teach")],
    n: Annotated[int, typer.Option("-n", min=1, help="new examples wanted")],
    out: OutOpt,
    teacher: TeacherOpt = None,
    teacher_url: UrlOpt = None,
    teacher_config: ConfigOpt = None,
    cache: CacheOpt = None,
) -> None:
    """New examples from a task description and seed rows, checked and deduplicated."""
    from ftagent.tools.atomic import write_json, write_jsonl
    from ftagent.tools.teacher.settings import default_cache
    from ftagent.tools.teacher.synthetic import seed_pairs, synthesize

    s = teacher_settings(teacher, teacher_url, teacher_config)
    pairs = seed_pairs(_chat_rows(seeds))
    if not pairs:
        raise fail(f"{seeds}: no example with an answer to use as a seed")
    with _progress("synthetic examples") as update:
        kept, rejected, stats = synthesize(task, pairs, n, s, cache or default_cache(),
                                           on_progress=update)
    write_jsonl(out / "synthetic.jsonl", kept)
    write_jsonl(out / "rejected.jsonl", rejected)
    write_json(out / "synthetic.json", {"task": task, "asked": n, "kept": len(kept),
                                        "rejected": len(rejected), **stats.__dict__})
    typer.echo(f"{len(kept)} of {n} examples written to {out / 'synthetic.jsonl'}; "
               f"{len(rejected)} set aside; {stats.requests} requests, {stats.cache_hits} "
               "from the cache")


def augment(
    data: Annotated[Path, typer.Argument(help="classification rows (any format ftagent reads)")],
    task: Annotated[str, typer.Option(help="what the examples should teach")],
    out: OutOpt,
    target: Annotated[int | None, typer.Option(
        help="examples per label wanted (default: as many as the largest label)")] = None,
    teacher: TeacherOpt = None,
    teacher_url: UrlOpt = None,
    teacher_config: ConfigOpt = None,
    cache: CacheOpt = None,
) -> None:
    """More examples for the labels that fall short; counts per label before and after."""
    from ftagent.tools.teacher.settings import default_cache
    from ftagent.tools.teacher.synthetic import augment

    s = teacher_settings(teacher, teacher_url, teacher_config)
    with _progress("augmenting", (ValueError,)) as update:
        report = augment(_chat_rows(data), task, s, out, cache or default_cache(), target,
                         on_progress=update)
    typer.echo(json.dumps({k: report[k] for k in ("before", "after", "added", "rejected")}))


def _chat_rows(path: Path) -> list[dict]:
    """Chat rows of a file in any format ftagent reads (converted, nothing validated)."""
    from ftagent.tools.data.readers import read_records
    from ftagent.tools.data.schema import RowError, convert, guess_schema

    rows = []
    try:
        for rec in read_records(path):
            schema = guess_schema(rec.data or {})
            if schema is None:
                raise fail(f"{rec.source}:{rec.row}: not an example ftagent reads")
            rows += convert(rec.data, schema)
    except RowError as exc:
        raise fail(f"{path}: field {exc.field}: {exc}") from None
    except OSError as exc:
        raise fail(str(exc)) from None
    return rows
