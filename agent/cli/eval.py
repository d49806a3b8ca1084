"""`ftagent eval`: base vs tuned on held-out data, for a finished run or any two models."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer
from ftagent.agent.cli.common import fail


def eval_command(
    run: Annotated[str | None, typer.Option(help="a run id or run folder to evaluate")] = None,
    base: Annotated[str | None, typer.Option(help="base model folder (or bundled name)")] = None,
    tuned: Annotated[
        str | None, typer.Option(help="tuned model: a full model folder or a LoRA adapter")
    ] = None,
    test: Annotated[
        Path | None, typer.Option(help="held-out chat JSONL (default: the run's test split)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="report folder (default: RUN/eval/rerun-<time>)")
    ] = None,
    task: Annotated[str, typer.Option(help="task type (default: the run's)")] = "",
    as_json: Annotated[bool, typer.Option("--json", help="print the report as JSON")] = False,
    judge_url: Annotated[str | None, typer.Option(
        help="OpenAI-compatible base URL of an LLM judge (default: $FTAGENT_JUDGE_BASE_URL)")
    ] = None,
    judge_model: Annotated[str | None, typer.Option(
        help="the judge's model name (default: $FTAGENT_JUDGE_MODEL)")] = None,
) -> None:
    """Score base vs tuned: loss, task metrics, refusal, over-refusal and forgetting
    probes; writes report.json, report.md and metrics.png."""
    from ftagent.agent.cli.console import verdict_table
    from ftagent.agent.service.evaluation import compare_models, run_inputs
    from ftagent.agent.service.new_run import InputError
    from rich.console import Console

    labels: list[str] = []
    targets: dict = {}
    train_file = None
    try:
        if run:
            folder = _run_folder(run)
            state = run_inputs(folder)
            base = base or state["base"]
            tuned = tuned or str(folder / "adapter")
            test = test or Path(state["test"])
            task = task or state["task_type"]
            labels, targets, train_file = state["labels"], state["targets"], state["train"]
            # A finished run's own report is never overwritten: re-evaluations go beside it.
            out = out or folder / "eval" / time.strftime("rerun-%Y%m%d-%H%M%S")
        if not (base and tuned and test):
            raise InputError("give --run RUN, or --base, --tuned and --test")
        report, verdict, out = compare_models(
            base, tuned, test, out or Path(tuned).parent / "eval", task or "generation", labels,
            train_file, targets, _judge(judge_url, judge_model))
    except InputError as exc:
        raise fail(str(exc)) from None
    if as_json:
        typer.echo(json.dumps({"report": report.model_dump(), "verdict": verdict.model_dump()}))
        return
    console = Console()
    console.print(verdict_table([r.model_dump() for r in verdict.rows], report.n_test))
    console.print(verdict.summary)
    console.print(verdict.safety_summary)
    for w in verdict.warnings:
        console.print(f"[yellow]{w}[/]")
    console.print(f"Report: {out / 'report.md'}")


def _judge(judge_url: str | None, judge_model: str | None):
    """The LLM judge from the flags over $FTAGENT_JUDGE_*; None leaves the environment's."""
    from ftagent.agent.service.new_run import InputError
    from ftagent.tools.evaluate.judge import JudgeEndpoint

    endpoint = JudgeEndpoint.from_env()
    if not (judge_url or judge_model):
        return None
    if not (judge_url or endpoint) or not (judge_model or endpoint):
        raise InputError("an LLM judge needs both --judge-url and --judge-model")
    return JudgeEndpoint(base_url=judge_url or endpoint.base_url,
                         model=judge_model or endpoint.model,
                         api_key=endpoint.api_key if endpoint else "not-needed")


def _run_folder(run: str) -> Path:
    from ftagent.agent.service.new_run import InputError
    from ftagent.agent.service.runs import RunError, find_run

    if Path(run).is_dir():
        return Path(run)
    try:
        return find_run(run)
    except RunError as exc:
        raise InputError(str(exc)) from None
