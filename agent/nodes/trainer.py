"""trainer: run the training recipe in its own process, streaming its metrics."""

from __future__ import annotations

import math

from agent.gates import GATES, GateRequest
from tools.jobs import run_training_job
from tools.train_config import load_config


def trainer(state: dict) -> dict:
    from langgraph.config import get_stream_writer

    write = get_stream_writer()
    cfg = load_config(state["config_path"])

    def progress(row: dict) -> None:
        write({"type": "train_progress", "attempt": state["attempt"], **row})

    check_before_training(cfg)
    result = run_training_job(state["config_path"], cfg.output_dir, on_metrics=progress)
    return {
        "train_result": result,
        "history": [
            {"node": "trainer", "steps": result["global_step"], "train_loss": result["train_loss"]}
        ],
    }


def check_before_training(cfg) -> None:
    """Pre-flight before a fresh start (versions, 4-bit backend, memory, disk, model files);
    a job already started or finished is left to resume or report."""
    from pathlib import Path

    from tools.atomic import write_json
    from tools.hardware import probe
    from tools.preflight import format_report, preflight

    out = Path(cfg.output_dir)
    if (out / "job.json").exists() or (out / "result.json").exists():
        return
    report = preflight(cfg, probe(out.parent))
    write_json(out / "preflight.json", report.model_dump())
    if not report.ok:
        raise RuntimeError(f"pre-flight check failed:\n{format_report(report)}")


def training_request(state: dict) -> GateRequest:
    r = state["train_result"]
    ok = r["global_step"] > 0 and math.isfinite(r["train_loss"])
    val = r.get("final_eval_loss")
    return GateRequest(
        gate="training",
        title=GATES["training"],
        question="Training finished. Evaluate this model?",
        passed=ok,
        summary=(
            f"{r['global_step']} steps in {r['wall_s']:.0f}s; mean train loss "
            f"{r['train_loss']:.4f}" + (f"; final validation loss {val:.4f}" if val else "")
        ),
        evidence={"output": r["output"], "loss_plot": r.get("loss_plot")},
    )
