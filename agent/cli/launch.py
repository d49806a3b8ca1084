"""`ftagent launch ...`: job scripts that train a config on a cluster's nodes, for its own
scheduler to run (nothing is submitted from here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from ftagent.agent.cli.common import fail

app = typer.Typer(
    help="Write job scripts that train a config on several nodes of a cluster.",
    no_args_is_help=True,
)


@app.command()
def slurm(
    config: Annotated[Path, typer.Argument(help="training config YAML (see `ftagent config`)")],
    nodes: Annotated[int, typer.Option(min=1, help="nodes to train on")] = 1,
    gpus_per_node: Annotated[
        int, typer.Option(min=0, help="GPUs per node, one process each (0: CPU nodes, DDP "
                          "over gloo)")
    ] = 1,
    processes_per_node: Annotated[
        int | None, typer.Option(min=1, help="CPU nodes only: processes per node (default 1)")
    ] = None,
    cpus_per_node: Annotated[
        int | None, typer.Option(min=1, help="CPU cores to ask for on each node (Slurm's "
                                 "default can be 1 per task: ask for the node's cores)")
    ] = None,
    time: Annotated[
        str, typer.Option(help="time limit of one attempt (HH:MM:SS or D-HH:MM:SS); the job "
                          "requeues itself before it and resumes")
    ] = "24:00:00",
    partition: Annotated[str | None, typer.Option(help="Slurm partition")] = None,
    account: Annotated[str | None, typer.Option(help="Slurm account")] = None,
    job_name: Annotated[
        str | None, typer.Option(help="job name (default: ftagent-<output folder name>)")
    ] = None,
    port: Annotated[
        int, typer.Option(help="port on the first node where the nodes meet")
    ] = 29500,
    max_restarts: Annotated[
        int, typer.Option(min=0, help="requeues after a failed attempt (a node died)")
    ] = 3,
    strategy: Annotated[
        str, typer.Option(help="several GPUs: auto (full: fsdp, adapters: ddp), ddp, fsdp or "
                          "deepspeed")
    ] = "auto",
    python: Annotated[
        str | None, typer.Option(help="the Python on the nodes with ftagent installed "
                                 "(default: this one; a path every node sees)")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="where to write the script (default: "
                                  "<output_dir>/train.sbatch)")
    ] = None,
) -> None:
    """Write an sbatch script that trains CONFIG on --nodes nodes through srun and
    `accelerate launch`: rendezvous from Slurm's node list, a log per node, requeue on
    preemption or near the time limit, resuming from the last checkpoint. The output_dir
    must be on a filesystem every node sees."""
    import sys

    from ftagent.tools.config.train_config import load_config
    from ftagent.tools.train.launch import STRATEGIES, deepspeed_installed
    from ftagent.tools.train.slurm import SlurmJob, write_sbatch

    if strategy not in ("auto", *STRATEGIES):
        raise fail(f"--strategy must be auto or one of {', '.join(STRATEGIES)}, "
                   f"got '{strategy}'")
    try:
        cfg = load_config(config)
    except (OSError, ValueError) as exc:
        raise fail(str(exc)) from None
    out_dir = Path(cfg.output_dir)
    if (out_dir / "result.json").exists():
        raise fail(f"{out_dir} holds a finished run; finished runs are never overwritten: "
                   "choose a new output_dir")
    name = job_name or "ftagent-" + (re.sub(r"[^A-Za-z0-9_.+-]", "-", out_dir.name) or "train")
    try:
        job = SlurmJob(nodes=nodes, gpus_per_node=gpus_per_node,
                       processes_per_node=processes_per_node, cpus_per_node=cpus_per_node,
                       time=time, partition=partition, account=account, job_name=name,
                       port=port, max_restarts=max_restarts)
    except ValueError as exc:
        raise fail(str(exc)) from None
    try:
        path = write_sbatch(cfg, config, job, out, strategy, python or sys.executable)
    except ValueError as exc:
        raise fail(str(exc)) from None
    each = "GPU(s)" if gpus_per_node else "CPU process(es)"
    typer.echo(f"wrote {path}: {nodes} node(s) x {job.per_node} {each}; "
               f"submit with: sbatch {path}")
    if gpus_per_node and strategy == "deepspeed" and not deepspeed_installed():
        typer.secho("note: deepspeed is not installed here; the nodes need "
                    "`pip install deepspeed`", fg="yellow", err=True)
