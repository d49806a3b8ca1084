"""trainer: run the training recipe in its own process, streaming its metrics."""

from __future__ import annotations

import math

from ftagent.agent.graph.gates import GATES, GateRequest
from ftagent.tools.config.train_config import load_config
from ftagent.tools.train.jobs import run_training_job
from ftagent.tools.train.summary import training_summary


def trainer(state: dict) -> dict:
    if state.get("provider"):  # a provider's base model: agent/graph/nodes/provider.py
        from ftagent.agent.graph.nodes import provider

        return provider.trainer(state)
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

    from ftagent.tools.atomic import write_json
    from ftagent.tools.hardware import probe
    from ftagent.tools.train.preflight import format_report, preflight

    out = Path(cfg.output_dir)
    if (out / "job.json").exists() or (out / "result.json").exists():
        return
    report = preflight(cfg, probe(out.parent))
    write_json(out / "preflight.json", report.model_dump())
    if not report.ok:
        raise RuntimeError(f"pre-flight check failed:\n{format_report(report)}")


def training_request(state: dict) -> GateRequest:
    if state.get("provider"):  # a provider's base model: agent/graph/nodes/provider.py
        from ftagent.agent.graph.nodes import provider

        return provider.training_request(state)
    r = state["train_result"]
    ok = r["global_step"] > 0 and math.isfinite(r["train_loss"])
    return GateRequest(
        gate="training",
        title=GATES["training"],
        question="Training finished. Evaluate this model?",
        passed=ok,
        summary=training_summary(r),
        evidence={"output": r["output"], "loss_plot": r.get("loss_plot"),
                  "best_checkpoint": r.get("best_checkpoint"),
                  "checkpoints": r.get("checkpoints", []),
                  "anomalies": r.get("anomalies", [])},
    )
