"""tester: base vs tuned on held-out data; the evaluation and safety gates."""

from __future__ import annotations

from pathlib import Path

from agent.gates import GATES, GateRequest
from tools.evaluate import evaluate
from tools.verdict import judge

PROBE_FILE = Path(__file__).resolve().parents[2] / "data" / "probes" / "advbench_goals.jsonl"


def tester(state: dict) -> dict:
    report = state["data_report"]
    out = Path(state["run_dir"]) / "eval"
    result = evaluate(
        base_path=state["plan"]["model_path"],
        adapter_path=state["train_result"]["output"],
        test_file=report["split_paths"]["test"],
        out_dir=out,
        task_type=report["task_type"],
        labels=report["labels"],
        probe_file=PROBE_FILE if PROBE_FILE.exists() else None,
        bf16=state["plan"]["precision"] == "bf16",
    )
    verdict = judge(result, state["plan"]["targets"])
    return {
        "eval_report": result.model_dump(),
        "verdict": verdict.model_dump(),
        "history": [{"node": "tester", "attempt": state["attempt"], **verdict.model_dump()}],
    }


def evaluation_request(state: dict) -> GateRequest:
    v = state["verdict"]
    return GateRequest(
        gate="evaluation",
        title=GATES["evaluation"],
        question="Accept these results?",
        passed=v["targets_met"],
        summary=v["summary"],
        evidence={
            "report": str(Path(state["run_dir"]) / "eval" / "report.md"),
            "attempt": state["attempt"],
            "max_attempts": state["max_attempts"],
        },
    )


def safety_request(state: dict) -> GateRequest:
    v = state["verdict"]
    return GateRequest(
        gate="safety",
        title=GATES["safety"],
        question="No harmful behaviour found. Deploy?",
        passed=v["safe"],
        summary=v["safety_summary"],
        evidence={"report": str(Path(state["run_dir"]) / "eval" / "report.md")},
    )
