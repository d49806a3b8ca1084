"""Launch the training recipe as its own process and follow its metrics file."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from ftagent.tools.paths import import_root
from ftagent.tools.process import alive
from ftagent.tools.train.recipe import METRICS_FILE, RESULT_FILE

JOB_FILE = "job.json"


class TrainingFailed(RuntimeError):
    pass


def run_training_job(
    config_path: str | Path,
    output_dir: str | Path,
    on_metrics: Callable[[dict], None] | None = None,
    poll_s: float = 1.0,
    num_processes: int = 1,
    launch: str = "auto",
    accelerate_config: str | Path | None = None,
    num_machines: int = 1,
    machine_rank: int = 0,
    main_address: str | None = None,
) -> dict:
    """Run `python -m ftagent.tools.train CONFIG` to completion; stream each metrics row.

    A finished job (result.json present) is not run again; a job still running from an
    earlier, killed watcher is followed to its end; an unfinished one resumes from its
    last checkpoint inside the recipe. With `num_processes` > 1 (or launch="accelerate")
    the recipe runs under `accelerate launch`, optionally with an accelerate config file;
    job.json then holds the launcher's pid, which outlives every rank.

    Several machines: each runs this with its own `machine_rank` (`launch_command`). The
    output folder is shared by all of them (the resume reads the same checkpoints on every
    machine), so a machine other than 0 keeps its launcher's pid and log in files of its
    own (`job.node1.json`, `train.node1.log`); global rank 0, on machine 0, writes the
    metrics, checkpoints and result.json as on one machine. Such a machine returns that
    result when it can see it, else `{"machine_rank": R}`.
    """
    out = Path(output_dir)
    done = out / RESULT_FILE
    out.mkdir(parents=True, exist_ok=True)
    log_path, metrics_path = out / node_file("train.log", machine_rank), out / METRICS_FILE
    offset = 0  # replay earlier rows too, so a resumed watcher shows the whole curve
    orphan = live_job(out, machine_rank)
    while orphan and alive(orphan):
        offset = _follow(metrics_path, offset, on_metrics)
        time.sleep(poll_s)
    if done.exists():
        _follow(metrics_path, offset, on_metrics)
        return json.loads(done.read_text())
    with open(log_path, "ab") as log:
        # Its own session: a Ctrl-C meant for the agent does not reach the trainer, and a
        # killed agent leaves training running.
        proc = subprocess.Popen(
            job_command(config_path, num_processes, launch, accelerate_config,
                        num_machines, machine_rank, main_address),
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=import_root(),
            start_new_session=True,
            env=training_env(),
        )
        (out / node_file(JOB_FILE, machine_rank)).write_text(
            json.dumps({"pid": proc.pid, "started": _started(proc.pid)}))
        try:
            while True:
                finished = proc.poll() is not None
                offset = _follow(metrics_path, offset, on_metrics)
                if finished:
                    break
                time.sleep(poll_s)
        except BaseException:
            proc.terminate()  # asked to stop: the last checkpoint lets a resume continue
            proc.wait(timeout=60)
            raise
    if proc.returncode == 0 and machine_rank > 0:  # rank 0 writes the result, elsewhere
        return json.loads(done.read_text()) if done.exists() else {"machine_rank": machine_rank}
    if proc.returncode != 0 or not done.exists():
        lines = log_path.read_text(errors="replace").splitlines()
        # Under accelerate the log ends with torchrun's summary; the recipe's own
        # "error: ..." line (the diagnosis and its fix) is higher up.
        said = [x for x in lines if x.startswith("error: ")][-1:]
        raise TrainingFailed(
            f"training exited with code {proc.returncode}; last lines of {log_path}:\n"
            + "\n".join(said + [x for x in lines[-15:] if x not in said])
        )
    return json.loads(done.read_text())


def job_command(config_path, num_processes: int = 1, launch: str = "auto",
                accelerate_config=None, num_machines: int = 1, machine_rank: int = 0,
                main_address: str | None = None) -> list[str]:
    """The recipe's command line: plain, or under `accelerate launch` (several processes
    or machines, an accelerate config, or launch="accelerate"). `num_processes` counts
    this machine's processes."""
    if launch not in ("auto", "none", "accelerate"):
        raise ValueError(f"launch must be auto, none or accelerate, got '{launch}'")
    several = num_processes > 1 or num_machines > 1 or accelerate_config
    if launch == "none" and several:
        raise ValueError("several processes or machines, or an accelerate config, need "
                         "launch='accelerate'")
    if launch == "accelerate" or several:
        from ftagent.tools.train.launch import launch_command

        return launch_command(config_path, num_processes, extra_config_file=accelerate_config,
                              num_machines=num_machines, machine_rank=machine_rank,
                              main_address=main_address)
    return [sys.executable, "-m", "ftagent.tools.train", str(config_path)]


def node_file(name: str, machine_rank: int = 0) -> str:
    """The name of a launcher's own file (job.json, train.log) for one machine of several
    sharing an output folder: machine 0 keeps the plain name every reader knows."""
    if machine_rank == 0:
        return name
    stem, dot, ext = name.rpartition(".")
    return f"{stem}.node{machine_rank}{dot}{ext}"


def training_env() -> dict:
    """The trainer's environment: glibc keeps freed memory instead of returning every
    large tensor to the OS and faulting it back in on the next step (measured on
    SmolLM2-135M: half the page faults)."""
    env = dict(os.environ)
    env.setdefault("MALLOC_MMAP_MAX_", "0")
    env.setdefault("MALLOC_TRIM_THRESHOLD_", str(1 << 40))
    return env


def live_job(out: Path, machine_rank: int = 0) -> int | None:
    """The pid of the training process of `out` (an output folder) while it runs, else None;
    with several machines, the one this machine started."""
    job = out / node_file(JOB_FILE, machine_rank)
    if not job.exists():
        return None
    info = json.loads(job.read_text())
    pid = info.get("pid")
    # The start time guards against a recycled pid that belongs to another process.
    if pid and alive(pid) and _started(pid) == info.get("started"):
        return pid
    return None


def _started(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


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
