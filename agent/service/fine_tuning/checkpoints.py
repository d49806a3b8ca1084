"""A job's checkpoints, as OpenAI lists them: the complete checkpoints its training wrote
(only those with the `COMPLETE` marker, the ones a resume would trust), newest first,
with the training metrics logged at their step."""

from __future__ import annotations

from pathlib import Path

from ftagent.agent.service.fine_tuning.shapes import checkpoint_object


def job_checkpoints(job: dict) -> list[dict]:
    from ftagent.tools.train.checkpoint import MARKER, is_complete
    from ftagent.tools.train.metrics import current_rows, read_metrics

    run_dir = job.get("run_dir")
    attempts = sorted(Path(run_dir).glob("train/attempt-*"),
                      key=lambda p: int(p.name.rsplit("-", 1)[-1])) if run_dir else []
    if not attempts:
        return []
    out = attempts[-1]  # the attempt the job's model comes from
    rows = current_rows(read_metrics(out))
    found = []
    for path in out.glob("checkpoints/checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if not step.isdigit() or not is_complete(path):
            continue
        step = int(step)
        metrics = {}
        for r in rows:
            if r.get("step") != step:
                continue
            if "loss" in r:
                metrics["train_loss"] = r["loss"]
            if "mean_token_accuracy" in r:
                metrics["train_mean_token_accuracy"] = r["mean_token_accuracy"]
            if "eval_loss" in r:
                metrics["valid_loss"] = r["eval_loss"]
        found.append(checkpoint_object(job, step, (path / MARKER).stat().st_mtime, metrics))
    return sorted(found, key=lambda c: c["step_number"], reverse=True)
