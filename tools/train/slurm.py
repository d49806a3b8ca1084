"""A Slurm batch script that trains one config on several nodes.

`sbatch_script` is pure (tested by `bash -n` and by running it with Slurm's variables and
stand-ins for `srun` and `scontrol`); `write_sbatch` prepares the files it refers to and
writes it. The script, on the batch host:

1. exits at once if the output folder holds a finished run (result.json);
2. starts one task per node with `srun`; each task runs `ftagent_node`, one
   `accelerate launch` of the recipe with that node's rank. Every node derives the same
   rendezvous from Slurm's own variables: the first host of `$SLURM_JOB_NODELIST` is
   machine 0, which hosts torchrun's static rendezvous on a fixed port; `$SLURM_NODEID`
   is the machine rank, `$SLURM_NNODES` is checked against the node count the script was
   written for (the world size, and with it the data order, depends on it);
3. requeues itself (`scontrol requeue`) when Slurm signals that the time limit is near,
   and when training failed (a node died, a collective timed out), up to `max_restarts`
   times. Preemption requeues it through `--requeue`. A requeued job runs the script again
   from the top, and the recipe resumes from the last checkpoint marked COMPLETE in the
   output folder, with the fingerprint check and the same data order as any resume: the
   output folder must be on a filesystem every node sees.

Per-node logs go to `<output_dir>/logs/<job name>-<job id>-<node>.log` (appended to across
requeues), the batch host's own to `<job name>-<job id>.log`.
"""

from __future__ import annotations

import re
import shlex
import sys
from dataclasses import dataclass
from pathlib import Path

from ftagent.tools.train import nodes

SCRIPT_FILE = "train.sbatch"
LOG_DIR = "logs"
DEFAULT_PORT = 29500
# Slurm's --time forms: minutes, MM:SS, HH:MM:SS, D-HH, D-HH:MM, D-HH:MM:SS.
_TIME = re.compile(r"^(\d+|\d+:\d{2}|\d+:\d{2}:\d{2}|\d+-\d+|\d+-\d+:\d{2}|\d+-\d+:\d{2}:\d{2})$")
_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")


@dataclass(frozen=True)
class SlurmJob:
    """What the job asks Slurm for. gpus_per_node 0 trains on CPU nodes (DDP over gloo),
    `processes_per_node` processes each (default 1); with GPUs, one process per GPU."""

    nodes: int
    gpus_per_node: int = 1
    processes_per_node: int | None = None
    cpus_per_node: int | None = None
    time: str = "24:00:00"
    partition: str | None = None
    account: str | None = None
    job_name: str = "ftagent"
    port: int = DEFAULT_PORT
    max_restarts: int = 3
    signal_s: int = 120  # the warning before the time limit: enough for a node to stop

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"nodes must be at least 1, got {self.nodes}")
        if self.gpus_per_node < 0:
            raise ValueError(f"gpus per node must be 0 or more, got {self.gpus_per_node}")
        if self.processes_per_node is not None and self.processes_per_node < 1:
            raise ValueError(f"processes per node must be at least 1, got "
                             f"{self.processes_per_node}")
        if self.gpus_per_node and self.processes_per_node not in (None, self.gpus_per_node):
            raise ValueError("with GPUs, each node runs one process per GPU: leave processes "
                             "per node out")
        if self.cpus_per_node is not None and self.cpus_per_node < 1:
            raise ValueError(f"cpus per node must be at least 1, got {self.cpus_per_node}")
        if not _TIME.match(self.time):
            raise ValueError(f"time must be Slurm's MINUTES, HH:MM:SS or D-HH:MM:SS, got "
                             f"'{self.time}'")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be from 1 to 65535, got {self.port}")
        for what, value in (("job name", self.job_name), ("partition", self.partition),
                            ("account", self.account)):
            if value is not None and not _NAME.match(value):
                raise ValueError(f"{what} may hold letters, digits and _.+- only, got "
                                 f"'{value}'")
        if self.max_restarts < 0 or self.signal_s < 0:
            raise ValueError("max_restarts and signal_s must be 0 or more")

    @property
    def per_node(self) -> int:
        return self.gpus_per_node or self.processes_per_node or 1


def node_launch(config_path: str | Path, job: SlurmJob, python: str = sys.executable,
                accelerate_config: str | Path | None = None) -> str:
    """The shell words of one node's `accelerate launch`, with the node's rank, the main
    host and the CPU threads left to the shell ("$SLURM_NODEID", "$main_host",
    "$threads"): the same builder as `ftagent train --nodes`, so both start the recipe
    alike."""
    return nodes.node_launch(config_path, job.nodes, job.per_node, bool(job.gpus_per_node),
                             job.port, nodes.SLURM, shlex.quote(python), accelerate_config)


def sbatch_script(config_path: str | Path, output_dir: str | Path, job: SlurmJob,
                  workdir: str | Path, python: str = sys.executable,
                  accelerate_config: str | Path | None = None) -> str:
    """The batch script's text. Paths should be absolute: Slurm runs it from a copy, on
    another host. `workdir` is the folder each node starts the recipe in."""
    out = Path(output_dir)
    if any(c.isspace() or c in "%'\"" for c in str(out)):
        # #SBATCH lines are not shell: no quoting, and % starts one of Slurm's patterns.
        raise ValueError(f"Slurm's log paths cannot hold spaces, quotes or '%': output_dir "
                         f"'{out}'")
    logs = out / LOG_DIR
    q = shlex.quote
    header = [
        f"--job-name={job.job_name}",
        f"--nodes={job.nodes}",
        "--ntasks-per-node=1",  # one launcher per node; torchrun starts its processes
        *([f"--gpus-per-node={job.gpus_per_node}"] if job.gpus_per_node else []),
        *([f"--cpus-per-task={job.cpus_per_node}"] if job.cpus_per_node else []),
        f"--time={job.time}",
        *([f"--partition={job.partition}"] if job.partition else []),
        *([f"--account={job.account}"] if job.account else []),
        f"--output={logs}/%x-%j.log",
        "--open-mode=append",  # a requeued job keeps its id: add to its logs, do not truncate
        "--requeue",  # preemption and node failure put the job back in the queue
        f"--signal=B:USR1@{job.signal_s}",  # to this script, before the time limit
    ]
    node = nodes.node_function(config_path, job.nodes, job.per_node, job.gpus_per_node,
                               job.port, nodes.SLURM, shlex.quote(python), workdir,
                               accelerate_config)
    return f"""#!/bin/bash
# Written by `ftagent launch slurm`: trains {config_path}
# on {job.nodes} node(s) x {job.per_node} process(es), {'GPU' if job.gpus_per_node else 'CPU'}.
#   submit:            sbatch THIS_FILE
#   one node by hand:  SLURM_NNODES=.. SLURM_NODEID=.. SLURM_JOB_NODELIST=.. bash THIS_FILE node
{chr(10).join('#SBATCH ' + h for h in header)}
set -euo pipefail

OUTPUT_DIR={q(str(out))}
MAX_RESTARTS={job.max_restarts}

# One node's share, run by srun on every node: an `accelerate launch` with this node's rank.
# All nodes compute the same rendezvous from Slurm's variables: the first host of the job's
# node list is machine 0 and listens on port {job.port}.
{node}

if [ "${{1:-}}" = node ]; then
    ftagent_node
    exit
fi

if [ -f "$OUTPUT_DIR/result.json" ]; then
    echo "$OUTPUT_DIR holds a finished run (result.json): nothing to do"
    exit 0
fi

requeued=""
requeue() {{
    [ -z "$requeued" ] || return 0
    requeued=yes
    echo "$1: requeueing job $SLURM_JOB_ID; it resumes from the last complete checkpoint"
    scontrol requeue "$SLURM_JOB_ID"
}}
# bash runs a trap only between commands, so srun runs in the background and is waited for.
trap 'requeue "time limit near"' USR1

echo "job $SLURM_JOB_ID, attempt $(( ${{SLURM_RESTART_COUNT:-0}} + 1 )), nodes $SLURM_JOB_NODELIST"
srun --nodes={job.nodes} --ntasks-per-node=1 --kill-on-bad-exit=1 --open-mode=append \\
    --output={q(str(logs) + '/%x-%j-%N.log')} \\
    bash -c "$(declare -f ftagent_node); ftagent_node" &
step=$!
status=0
wait "$step" || status=$?
while kill -0 "$step" 2>/dev/null; do  # a trapped signal ended `wait`, not srun
    status=0
    wait "$step" || status=$?
done
if [ "$status" -ne 0 ] && [ -z "$requeued" ]; then
    if [ "${{SLURM_RESTART_COUNT:-0}}" -lt "$MAX_RESTARTS" ]; then
        requeue "training exited with status $status"
    else
        echo "training exited with status $status after $MAX_RESTARTS restart(s): giving up" >&2
    fi
fi
exit "$status"
"""


# ---- I/O ----------------------------------------------------------------------------


def write_sbatch(cfg, config_path: str | Path, job: SlurmJob, out: str | Path | None = None,
                 strategy: str = "auto", python: str = sys.executable) -> Path:
    """Write the batch script for `cfg` (a TrainConfig loaded from `config_path`) to `out`
    (default: `<output_dir>/train.sbatch`), atomically; also the log folder (Slurm does not
    make it) and, with several GPUs in all, the accelerate config every node reads. Each
    node starts the recipe in the folder this runs in, so that paths in the config that are
    relative (train_file, output_dir) mean on the nodes what they mean here."""
    from ftagent.tools.atomic import write_text
    from ftagent.tools.train.launch import prepare_config

    output_dir = Path(cfg.output_dir).resolve()
    (output_dir / LOG_DIR).mkdir(parents=True, exist_ok=True)
    total = job.per_node * job.nodes
    accel = (prepare_config(cfg, total, strategy, num_machines=job.nodes)
             if job.gpus_per_node and total > 1 else None)
    target = Path(out).resolve() if out else output_dir / SCRIPT_FILE
    text = sbatch_script(Path(config_path).resolve(), output_dir, job, Path.cwd(), python,
                         accel)
    return write_text(target, text)
