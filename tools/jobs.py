"""Launch the training recipe as its own process and follow its metrics file."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from tools.train import METRICS_FILE, RESULT_FILE


class TrainingFailed(RuntimeError):
    pass


def run_training_job(
    config_path: str | Path,
    output_dir: str | Path,
    on_metrics: Callable[[dict], None] | None = None,
    poll_s: float = 1.0,
) -> dict:
    """Run `python -m tools.train CONFIG` to completion; stream each new metrics row.

    A finished job (result.json present) is not run again; an unfinished one resumes
    from its last checkpoint inside the recipe.
    """
    out = Path(output_dir)
    done = out / RESULT_FILE
    if done.exists():
        return json.loads(done.read_text())
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "train.log"
    metrics_path = out / METRICS_FILE
    offset = metrics_path.stat().st_size if metrics_path.exists() else 0
    with open(log_path, "ab") as log:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tools.train", str(config_path)],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=Path(__file__).resolve().parent.parent,
        )
        try:
            while True:
                finished = proc.poll() is not None
                offset = _follow(metrics_path, offset, on_metrics)
                if finished:
                    break
                time.sleep(poll_s)
        except BaseException:
            proc.terminate()  # the checkpoint on disk lets a later run resume
            proc.wait(timeout=30)
            raise
    if proc.returncode != 0 or not done.exists():
        tail = log_path.read_text(errors="replace").splitlines()[-15:]
        raise TrainingFailed(
            f"training exited with code {proc.returncode}; last lines of {log_path}:\n"
            + "\n".join(tail)
        )
    return json.loads(done.read_text())


def _follow(path: Path, offset: int, on_metrics) -> int:
    if not path.exists():
        return offset
    with open(path, encoding="utf-8") as fh:
        fh.seek(offset)
        while True:
            line = fh.readline()
            if not line.endswith("\n"):  # partial line: read it next time
                break
            offset = fh.tell()
            if on_metrics:
                on_metrics(json.loads(line))
    return offset
