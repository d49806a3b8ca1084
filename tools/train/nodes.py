"""One node's share of a run on several nodes, as a shell function every launcher uses.

A scheduler (Slurm, SkyPilot) starts the same script on every node and tells each node its
place in the job through its own environment variables. `node_function` turns those into
one `accelerate launch` of the recipe with that node's rank: it checks that the scheduler
gave the node count (and GPUs per node) the job was written for, since the world size
fixes the data order; finds machine 0's host, where torchrun's static rendezvous listens on
a fixed port; shares the CPU cores out on CPU nodes; then starts the launcher. The launch
words come from `launch.launch_command`, the builder `ftagent train --nodes` uses, so every
way of training on several machines starts the recipe alike.
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path

from ftagent.tools.train.launch import launch_command


@dataclass(frozen=True)
class Scheduler:
    """Where a scheduler tells each node its place in the job (shell)."""

    name: str  # for messages: "Slurm gave 3"
    rank: str  # the variable holding this node's rank, 0 .. nodes-1
    nodes: str  # the variable holding the job's node count
    main_host: str  # a command that prints machine 0's host
    cpus: str  # an expression for the CPU cores this node may use
    gpus: str | None = None  # the variable holding GPUs per node, when the scheduler sets one


SLURM = Scheduler("Slurm", "SLURM_NODEID", "SLURM_NNODES",
                  'scontrol show hostnames "$SLURM_JOB_NODELIST" | sed -n 1p',
                  "${SLURM_CPUS_PER_TASK:-$(nproc)}")
# SkyPilot's run section sees the nodes' IPs one a line, the head node's first, in the
# order of SKYPILOT_NODE_RANK.
SKYPILOT = Scheduler("SkyPilot", "SKYPILOT_NODE_RANK", "SKYPILOT_NUM_NODES",
                     'printf "%s\\n" "$SKYPILOT_NODE_IPS" | sed -n 1p', "$(nproc)",
                     gpus="SKYPILOT_NUM_GPUS_PER_NODE")


def node_launch(config_path: str | Path, nodes: int, per_node: int, gpus: bool, port: int,
                scheduler: Scheduler, python: str,
                accelerate_config: str | Path | None = None) -> str:
    """The shell words of one node's `accelerate launch`, with the node's rank, the main
    host and the CPU threads left to the shell. `python` is a shell word, quoted by the
    caller (it may hold `$HOME`)."""
    at_run_time = {"--machine_rank": f'"${scheduler.rank}"',
                   "--main_process_ip": '"$main_host"',
                   "--num_cpu_threads_per_process": '"$threads"'}
    # Stand-in values, replaced below by the shell variables that hold the real ones.
    cmd = launch_command(config_path, per_node, "cuda" if gpus else "cpu",
                         extra_config_file=accelerate_config, cpu_threads=1,
                         num_machines=nodes, machine_rank=0,
                         main_address=f"main-host:{port}")
    words = [python, *(shlex.quote(w) for w in cmd[1:])]
    lines: list[list[str]] = [[]]
    take = None
    for raw, word in zip(cmd, words, strict=True):
        if raw.startswith("-") and lines[-1]:
            lines.append([])  # a flag and its value to a line, for the reader
        lines[-1].append(take or word)
        take = at_run_time.get(raw)
    return " \\\n        ".join(" ".join(line) for line in lines)


def node_function(config_path: str | Path, nodes: int, per_node: int, gpus: int, port: int,
                  scheduler: Scheduler, python: str, workdir: str | Path | None = None,
                  accelerate_config: str | Path | None = None, replace: bool = True) -> str:
    """`ftagent_node() ( ... )`: the shell function that starts this node's share. Its body
    is a subshell, so its `set -e` and `exit` stay inside it. `gpus` is the GPUs per node
    (0: CPU nodes, `per_node` processes each). `workdir`: the folder the recipe starts in
    (relative paths in the config mean what they meant where the job was written).
    `replace`: the launcher replaces the subshell (exec), so the scheduler's signals reach
    it; without, a script may go on after it (SkyPilot flushes cached mounts then)."""
    q = shlex.quote
    s = scheduler
    launch = node_launch(config_path, nodes, per_node, bool(gpus), port, s, python,
                         accelerate_config)
    check_gpus = "" if s.gpus is None else f"""\
    if [ "${{{s.gpus}:-0}}" != "{gpus}" ]; then
        echo "error: written for {gpus} GPU(s) per node, {s.name} gave ${{{s.gpus}:-none}};" \\
            "the world size fixes the data order: write the job again" >&2
        exit 2
    fi
"""
    threads = "" if gpus else f"""\
    # CPU threads per process: the node's cores shared out.
    threads=$(( {s.cpus} / {per_node} ))
    [ "$threads" -ge 1 ] || threads=1
"""
    cd = f"    cd {q(str(workdir))}\n" if workdir else ""
    return f"""\
ftagent_node() (
    set -euo pipefail
    if [ "${{{s.nodes}:-}}" != "{nodes}" ]; then
        echo "error: written for {nodes} node(s), {s.name} gave ${{{s.nodes}:-none}};" \\
            "the world size fixes the data order: write the job again for this count" >&2
        exit 2
    fi
{check_gpus}    main_host=$({s.main_host})
{threads}    export MALLOC_MMAP_MAX_="${{MALLOC_MMAP_MAX_:-0}}"
    export MALLOC_TRIM_THRESHOLD_="${{MALLOC_TRIM_THRESHOLD_:-{1 << 40}}}"
    echo "node ${s.rank} of ${s.nodes} on $(hostname), rendezvous $main_host:{port}"
{cd}    # The recipe resumes from the last COMPLETE checkpoint in its output_dir by itself.
    {'exec ' if replace else ''}{launch}
)"""
