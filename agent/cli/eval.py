"""`ftagent eval`: base vs tuned on held-out data, for a finished run or any two models."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated

import typer


def _fail(message: str, code: int = 2) -> typer.Exit:
    typer.secho(f"error: {message}", fg="red", err=True)
    return typer.Exit(code)


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
    from ftagent.tools.quiet import quiet_libraries
    from rich.console import Console

    quiet_libraries()
    from ftagent.tools.evaluate.compare import evaluate, write_report
    from ftagent.tools.evaluate.judge import JudgeEndpoint
    from ftagent.tools.evaluate.verdict import judge, rows_markdown

    labels: list[str] = []
    targets: dict = {}
    train_file = None
    if run:
        folder = _run_folder(run)
        state = _run_inputs(folder)
        base = base or state["base"]
        tuned = tuned or str(folder / "adapter")
        test = test or Path(state["test"])
        task = task or state["task_type"]
        labels, targets, train_file = state["labels"], state["targets"], state["train"]
        # A finished run's own report is never overwritten: re-evaluations go beside it.
        out = out or folder / "eval" / time.strftime("rerun-%Y%m%d-%H%M%S")
    if not (base and tuned and test):
        raise _fail("give --run RUN, or --base, --tuned and --test")
    for what, path in (("--tuned", tuned), ("--test", test)):
        if not Path(path).exists():
            raise _fail(f"{what} {path}: not found")
    from ftagent.tools.models import ModelNotFoundError, resolve_model

    try:
        base_path = str(resolve_model(base).path)
    except ModelNotFoundError as exc:
        raise _fail(str(exc)) from None
    out = out or Path(tuned).parent / "eval"
    if (out / "report.json").exists():
        raise _fail(f"{out} already holds a report; choose another --out")
    endpoint = JudgeEndpoint.from_env()
    if judge_url or judge_model:
        if not (judge_url or endpoint) or not (judge_model or endpoint):
            raise _fail("an LLM judge needs both --judge-url and --judge-model")
        endpoint = JudgeEndpoint(
            base_url=judge_url or endpoint.base_url, model=judge_model or endpoint.model,
            api_key=endpoint.api_key if endpoint else "not-needed")
    from ftagent.tools.evaluate.compare import UnsafeWeightsError, bundled_probes

    try:
        report = evaluate(
            base_path, tuned, test, out, task_type=task or "generation", labels=labels,
            probes=bundled_probes(test, task or "generation", labels), train_file=train_file,
            judge_endpoint=endpoint,
        )
    except UnsafeWeightsError as exc:
        raise _fail(str(exc)) from None
    verdict = judge(report, targets or {"min_gain": 0.0})
    write_report(report, out, rows_markdown(verdict.rows))
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


def _run_folder(run: str) -> Path:
    from ftagent.agent.service.runs import RunError, find_run

    if Path(run).is_dir():
        return Path(run)
    try:
        return find_run(run)
    except RunError as exc:
        raise _fail(str(exc)) from None


def _run_inputs(folder: Path) -> dict:
    """What the run's own tester used: model, splits, task, labels, targets."""
    plan_file, report_file = folder / "plan.json", folder / "data" / "report.json"
    if not (plan_file.exists() and report_file.exists() and (folder / "adapter").exists()):
        raise _fail(f"{folder} has no finished training (plan.json, data/report.json and "
                    "adapter/ are needed): finish the run first, or give --base/--tuned/--test")
    plan = json.loads(plan_file.read_text())
    report = json.loads(report_file.read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    return {"base": manifest["base_model"]["path"], "test": report["split_paths"]["test"],
            "train": report["split_paths"]["train"], "task_type": report["task_type"],
            "labels": report.get("labels") or [], "targets": plan.get("targets") or {}}
