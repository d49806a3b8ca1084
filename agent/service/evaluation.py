"""Evaluate two models for any front end: the command line's `ftagent eval`, the terminal
app's /eval and the chat. Checks what a person typed (the models resolve, the files exist,
a finished report is never overwritten), fills in what a finished run already knows
(its base model, test split, labels, training rows and targets), and hands one
`EvalRequest` to the evaluator, the same one the tester uses."""

from __future__ import annotations

import json
import time
from pathlib import Path

from ftagent.agent.service.new_run import InputError


def run_inputs(folder: Path) -> dict:
    """What the run's own tester used: base model, splits, task, labels, targets."""
    plan_file, report_file = folder / "plan.json", folder / "data" / "report.json"
    if not (plan_file.exists() and report_file.exists() and (folder / "adapter").exists()):
        raise InputError(f"{folder} has no finished training (plan.json, data/report.json and "
                         "adapter/ are needed): finish the run first, or give "
                         "--base/--tuned/--test")
    plan = json.loads(plan_file.read_text())
    report = json.loads(report_file.read_text())
    manifest = json.loads((folder / "manifest.json").read_text())
    return {"base": manifest["base_model"]["path"], "test": report["split_paths"]["test"],
            "train": report["split_paths"]["train"], "task_type": report["task_type"],
            "labels": report.get("labels") or [], "targets": plan.get("targets") or {}}


def compare_models(base: str, tuned: str | Path, test: str | Path, out: Path | None = None,
                   task_type: str = "generation", labels: list[str] | None = None,
                   train_file: str | Path | None = None, targets: dict | None = None,
                   judge=None):
    """Base vs tuned with the probes: returns (EvalReport, Verdict, report folder). The
    report goes to `out`, else to a new `eval-<time>` folder beside the tuned model.
    Bad input raises InputError (one line, nothing written)."""
    from ftagent.tools.evaluate.compare import UnsafeWeightsError
    from ftagent.tools.evaluate.request import EvalRequest, run_evaluation
    from ftagent.tools.models import ModelNotFoundError, resolve_model
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    for what, path in (("--tuned", tuned), ("--test", test)):
        if not Path(path).expanduser().exists():
            raise InputError(f"{what} {path}: not found")
    try:
        base_path = resolve_model(base).path
    except ModelNotFoundError as exc:
        raise InputError(str(exc)) from None
    tuned_path = Path(tuned).expanduser().resolve()
    out = out or tuned_path.parent / time.strftime("eval-%Y%m%d-%H%M%S")
    if (out / "report.json").exists():
        raise InputError(f"{out} already holds a report; choose another --out")
    request = EvalRequest(base_path=base_path, tuned_path=tuned_path,
                          test_file=Path(test).expanduser(), out_dir=out, task_type=task_type,
                          labels=labels or [], train_file=train_file,
                          targets=targets or {"min_gain": 0.0}, judge=judge)
    try:
        report, verdict = run_evaluation(request)
    except UnsafeWeightsError as exc:
        raise InputError(str(exc)) from None
    return report, verdict, out
