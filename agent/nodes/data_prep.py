"""data_prep: validate, clean and split the data; the dataset gate."""

from __future__ import annotations

from pathlib import Path

from agent.gates import GATES, GateRequest
from tools.data import prepare_dataset

MIN_TRAIN = 8


def data_prep(state: dict) -> dict:
    report = prepare_dataset(state["data_path"], Path(state["run_dir"]) / "data")
    return {
        "data_report": report.model_dump(),
        "history": [
            {
                "node": "data_prep",
                "kept": report.validation.kept,
                "dropped": report.validation.total - report.validation.kept,
            }
        ],
    }


def dataset_request(state: dict) -> GateRequest:
    r = state["data_report"]
    v = r["validation"]
    problems = [f"{c['name']}: {c['count']}" for c in v["checks"] if c["count"]]
    splits = ", ".join(f"{k} {n}" for k, n in r["splits"].items())
    return GateRequest(
        gate="dataset",
        title=GATES["dataset"],
        question="Train on this data?",
        passed=r["splits"].get("train", 0) >= MIN_TRAIN,
        summary=(
            f"{v['total']} examples read, {v['kept']} kept ({splits}); "
            f"task: {r['task_type']}. Problems: {', '.join(problems) or 'none'}. "
            + " ".join(r["warnings"])
        ).strip(),
        evidence={
            "report": str(Path(state["run_dir"]) / "data" / "report.md"),
            "splits": r["splits"],
            "problems": problems,
        },
    )
