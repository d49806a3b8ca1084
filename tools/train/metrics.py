"""What a training run tells the world while it runs and after: metrics.jsonl rows (read
live by the agent, the TUI and `ftagent train`), the loss plot, and the end-of-run summary
(best/final losses, overfitting, checkpoints)."""

from __future__ import annotations

import time
from pathlib import Path

from ftagent.tools import jsonl_log

METRICS_FILE = "metrics.jsonl"


def append_row(path: Path, row: dict) -> None:
    row["time"] = time.time()
    jsonl_log.append(path, row)


def read_metrics(output_dir: str | Path) -> list[dict]:
    """The rows so far; the training process may be writing the last line right now."""
    return jsonl_log.read(Path(output_dir) / METRICS_FILE, stop_at_partial=True)


def peak_memory_mb() -> dict:
    """Peak memory so far: process RSS (what a CPU run needs) and, on CUDA, the
    allocator's peak (what a GPU run needs)."""
    import resource

    import torch

    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available():
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def metrics_callback(path: Path):
    """A TrainerCallback appending every log line (with tokens/s, ETA and peak memory) to
    metrics.jsonl; only the main process writes."""
    from transformers import TrainerCallback

    class MetricsWriter(TrainerCallback):
        def on_train_begin(self, args, state, control, **kwargs):
            self._t0, self._step0, self._tokens = time.time(), state.global_step, None
            if state.is_world_process_zero:
                append_row(path, {"event": "begin", "max_steps": state.max_steps,
                                  "step": state.global_step})

        def on_log(self, args, state, control, logs=None, **kwargs):
            if not state.is_world_process_zero:
                return
            logs = logs or {}
            kind = "eval" if "eval_loss" in logs and "loss" not in logs else "log"
            row = {"event": kind, "step": state.global_step, "max_steps": state.max_steps,
                   "epoch": state.epoch, **peak_memory_mb()}
            row.update({k: v for k, v in logs.items() if isinstance(v, (int, float))})
            done = state.global_step - self._step0
            elapsed = time.time() - self._t0
            if done > 0 and state.max_steps:
                row["eta_s"] = round(elapsed / done * (state.max_steps - state.global_step), 1)
            if "num_tokens" in logs:  # TRL's running count of tokens fed to the model
                if self._tokens is None:
                    self._tokens = (logs["num_tokens"], time.time())
                elif time.time() > self._tokens[1]:
                    n0, t0 = self._tokens
                    row["tokens_per_s"] = round((logs["num_tokens"] - n0) / (time.time() - t0), 1)
            append_row(path, row)

    return MetricsWriter()


def current_rows(rows: list[dict]) -> list[dict]:
    """The log and eval rows of the run as it stands: a resumed process starts at its
    checkpoint's step (its `begin` row), so what the killed process logged after that step
    was redone and is dropped. Other events are kept."""
    out: list[dict] = []
    for r in rows:
        if r.get("event") == "begin" and out:
            s = r.get("step") or 0
            out = [x for x in out if x.get("event") not in ("log", "eval")
                   or x.get("step", 0) <= s]
        out.append(r)
    return out


def plot_loss(rows: list[dict], out: Path) -> Path | None:
    rows = current_rows(rows)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(*zip(*train, strict=True), label="train loss")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs) if xs else float("inf")


def summarize(rows: list[dict]) -> dict:
    """Final and best losses, anomalies and warnings of a finished run, for its gate."""
    from ftagent.tools.evaluate.diagnose import overfitting

    rows = current_rows(rows)
    train = [r["loss"] for r in rows if "loss" in r]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    anomalies = [{k: r[k] for k in ("kind", "step", "message", "fix") if k in r}
                 for r in rows if r.get("event") in ("anomaly", "recovered")]
    over = overfitting(rows)
    if over:
        anomalies.append(over)
    best = min(evals, key=lambda e: e[1]) if evals else None
    speeds = [r["tokens_per_s"] for r in rows if "tokens_per_s" in r]
    fed = next((r for r in reversed(rows) if "num_tokens" in r), {})
    return {
        "final_train_loss": _mean(train[-5:]) if train else None,
        "final_eval_loss": evals[-1][1] if evals else None,
        "best_eval_loss": best[1] if best else None,
        "best_eval_step": best[0] if best else None,
        "tokens_per_s": speeds[-1] if speeds else None,
        # The rows' tokens, and how many of them shared-prefix batches computed only once.
        "tokens": fed.get("num_tokens"),
        "tokens_saved_by_sharing": fed.get("tokens_saved_by_sharing", 0),
        "anomalies": anomalies,
        # A resumed run checks its data again: each warning once.
        "warnings": list(dict.fromkeys(r["message"] for r in rows
                                       if r.get("event") == "warning")),
    }
