"""Base vs tuned with every option, in one call: the tester, `ftagent eval` and the
terminal app's /eval all come through here, so the probes, the labels, the copy check
against the training rows and the LLM judge are chosen the same way for all three.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field


class EvalRequest(BaseModel):
    """What to compare, on which data, held to which targets."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    base_path: Path = Field(description="the base model's local folder")
    tuned_path: Path = Field(description="the adapter (or a full model) to compare with it")
    test_file: Path = Field(description="held-out rows, never trained on")
    out_dir: Path = Field(description="where report.json, report.md and metrics.png go")
    task_type: str = "generation"
    labels: list[str] = Field(default_factory=list, description="a classifier's labels")
    train_file: Path | None = Field(
        None, description="the task's training rows: answers copied from them are flagged")
    targets: dict = Field(default_factory=lambda: {"min_gain": 0.0},
                          description="the plan's targets (gain, floors, safety limits)")
    bf16: bool = False
    probes: bool = Field(True, description="the bundled safety and forgetting probes")
    judge: object | None = Field(
        None, description="a JudgeEndpoint; None reads $FTAGENT_JUDGE_* (no judge if unset)")


def run_evaluation(req: EvalRequest):
    """Evaluate, judge against the targets and write the report; returns (EvalReport,
    Verdict). Raises UnsafeWeightsError for pickled weights."""
    from ftagent.tools.evaluate.compare import bundled_probes, evaluate, write_report
    from ftagent.tools.evaluate.judge import JudgeEndpoint
    from ftagent.tools.evaluate.verdict import judge, rows_markdown

    report = evaluate(
        req.base_path, req.tuned_path, req.test_file, req.out_dir, task_type=req.task_type,
        labels=req.labels,
        probes=bundled_probes(req.test_file, req.task_type, req.labels) if req.probes else None,
        bf16=req.bf16, train_file=req.train_file,
        judge_endpoint=req.judge if req.judge is not None else JudgeEndpoint.from_env(),
    )
    verdict = judge(report, req.targets)
    write_report(report, req.out_dir, rows_markdown(verdict.rows))
    return report, verdict
