"""trainer: run the training recipe in its own process, streaming its metrics."""

from __future__ import annotations

import math

from ftagent.agent.graph.gates import GATES, GateRequest
from ftagent.tools.config.train_config import load_config
from ftagent.tools.train.jobs import run_training_job


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


def training_summary(r: dict) -> str:
    """Losses, speed, anomalies and checkpoints of a finished attempt, for the gate."""
    lines = [f"{r['global_step']} steps in {r['wall_s']:.0f}s; mean train loss "
             f"{r['train_loss']:.4f}"
             + (f", last steps {r['final_train_loss']:.4f}" if r.get("final_train_loss") else "")]
    if r.get("final_eval_loss") is not None:
        best = r.get("best_eval_loss")
        lines.append(f"validation loss: final {r['final_eval_loss']:.4f}"
                     + (f", best {best:.4f} at step {r['best_eval_step']}" if best else ""))
    if r.get("tokens_per_s"):
        lines.append(f"speed: {r['tokens_per_s']:.0f} tokens/s")
    for a in r.get("anomalies", []):
        lines.append(f"anomaly ({a.get('kind')}): {a.get('message')} {a.get('fix', '')}".strip())
    for w in r.get("warnings", []):
        lines.append(f"warning: {w}")
    if r.get("loss_plot"):
        lines.append(f"loss curve: {r['loss_plot']}")
    if r.get("checkpoints"):
        kept = r.get("best_checkpoint") or r["checkpoints"][-1]
        lines.append(f"checkpoints: {len(r['checkpoints'])} kept; best/last {kept}")
    return "\n".join(lines)
