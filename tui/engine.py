"""What the app shows of the engine, in plain functions it calls from thread workers: a
run's side-panel facts, the runs to resume, a data validation and a model comparison as
Markdown. Making runs, deciding gates and driving the workflow are the service's
(agent/service/), the same calls the command line and the chat make. No Textual here."""

from __future__ import annotations

import json
from pathlib import Path

from ftagent.agent.service.new_run import InputError
from ftagent.agent.service.runs import RESUMABLE


def run_info(run_dir: Path) -> dict:
    """Id, status, goal, data, model, method and metrics of a run, for the side panel."""
    from ftagent.agent.service.runs import effective_status, read_manifest

    m = read_manifest(run_dir)
    plan = {}
    if (Path(run_dir) / "plan.json").exists():
        try:
            plan = json.loads((Path(run_dir) / "plan.json").read_text())
        except json.JSONDecodeError:
            plan = {}
    inputs = m.get("inputs") or {}
    metrics = m.get("metrics") or {}
    return {
        "run_id": m["run_id"],
        "run_dir": str(run_dir),
        "status": effective_status(m),
        "gate": m.get("waiting_at"),
        "goal": inputs.get("goal", ""),
        "data": inputs.get("data_path"),
        "model": plan.get("model") or (m.get("base_model") or {}).get("name")
        or inputs.get("model"),
        "method": plan.get("method") or m.get("method"),
        "metrics": metric_text(metrics),
        "created": m.get("created"),
    }


def metric_text(metrics: dict) -> str:
    name = metrics.get("primary_metric")
    base, tuned = (metrics.get("base") or {}), (metrics.get("tuned") or {})
    if not name or base.get(name) is None or tuned.get(name) is None:
        return ""
    return f"{name} {base[name]:.2f}→{tuned[name]:.2f}"


def list_runs_info(runs_root: Path) -> list[dict]:
    """Every known run (this folder's and the index's), newest first."""
    from ftagent.agent.service.runs import list_runs

    out = []
    for row in list_runs(runs_root):
        try:
            out.append(run_info(Path(row["run_dir"])))
        except (OSError, KeyError, json.JSONDecodeError):
            continue
    return sorted(out, key=lambda r: r.get("created") or "", reverse=True)


def resumable_runs(runs_root: Path) -> list[dict]:
    """Runs in this runs folder that stopped before the end: killed mid-step (the manifest
    says running but its process is gone), waiting at a gate, or failed."""
    root = Path(runs_root).resolve()
    if not root.is_dir():
        return []
    return [r for r in list_runs_info(root)
            if r["status"] in RESUMABLE and Path(r["run_dir"]).resolve().parent == root]


def find_run_dir(run_id: str, runs_root: Path) -> Path:
    from ftagent.agent.service.runs import RunError, find_run

    try:
        return find_run(run_id, runs_root)
    except RunError as exc:
        raise InputError(str(exc)) from None


def check_resumable(run_dir: Path) -> None:
    from ftagent.agent.service.runs import RunError
    from ftagent.agent.service.runs import check_resumable as guard

    try:
        guard(run_dir)
    except RunError as exc:
        raise InputError(str(exc)) from None


def validate_data(path: str, model: str | None) -> tuple[str, bool]:
    """`ftagent data validate PATH --format md`: the report as Markdown, and whether it is
    free of errors."""
    from ftagent.tools.data import DataError, PrepareOptions, validate_dataset
    from ftagent.tools.data.report import to_markdown
    from ftagent.tools.models import DEFAULT_MODEL, ModelNotFoundError
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    try:
        report = validate_dataset([path], PrepareOptions(model=model or DEFAULT_MODEL,
                                                         near_dup_threshold=0.85))
    except (DataError, ModelNotFoundError) as exc:
        raise InputError(str(exc)) from None
    return to_markdown(report), not report.errors


def evaluate_models(base: str, tuned: str, test: str) -> str:
    """`ftagent eval --base --tuned --test`: base vs tuned with the probes; the report is
    written beside the tuned model, in a new folder, and returned as Markdown."""
    from ftagent.agent.service.evaluation import compare_models
    from ftagent.agent.service.outcome import comparison_markdown

    report, verdict, out = compare_models(base, tuned, test)
    return "\n\n".join([f"## Evaluation: `{base}` vs `{tuned}`",
                        comparison_markdown(report.model_dump()), verdict.summary,
                        verdict.safety_summary, *verdict.warnings, f"Report: `{out}/report.md`"])
