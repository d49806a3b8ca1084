"""`ftagent launch ...`: job files that train a config on a cluster's nodes, for its own
scheduler to run: an sbatch script for Slurm, a task for SkyPilot (which `--up` hands to
`sky launch`)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

import typer
from ftagent.agent.cli.common import fail

app = typer.Typer(
    help="Write job files that train a config on several nodes: Slurm, SkyPilot.",
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

    from ftagent.tools.train.launch import deepspeed_installed
    from ftagent.tools.train.slurm import SlurmJob, write_sbatch

    cfg, out_dir = _job_config(config, strategy)
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


@app.command()
def skypilot(
    config: Annotated[Path, typer.Argument(help="training config YAML (see `ftagent config`)")],
    gpus: Annotated[
        str | None, typer.Option(help="accelerators per node, as SkyPilot names them "
                                 "(H100:8, A100-80GB:4, L4); 'none' for CPU nodes")
    ] = "H100:8",
    nodes: Annotated[int, typer.Option(min=1, help="nodes to train on")] = 1,
    cloud: Annotated[
        str | None, typer.Option(help="where: a cloud or SkyPilot infra (aws, gcp, "
                                 "azure/eastus, k8s); default: SkyPilot's cheapest")
    ] = None,
    cpus: Annotated[
        str | None, typer.Option(help="CPUs per node, SkyPilot's form (8, 8+)")
    ] = None,
    processes_per_node: Annotated[
        int | None, typer.Option(min=1, help="CPU nodes only: processes per node (default 1)")
    ] = None,
    disk_size: Annotated[
        int | None, typer.Option(min=1, help="disk per node in GB (the cached run folder "
                                 "and the model live there)")
    ] = None,
    bucket: Annotated[
        str | None, typer.Option(help="bucket that holds the run folder (default: "
                                 "ftagent-<output folder>-<hash>; made if missing)")
    ] = None,
    name: Annotated[
        str | None, typer.Option(help="task and cluster name (default: "
                                 "ftagent-<output folder>)")
    ] = None,
    port: Annotated[int, typer.Option(help="port on the head node where the nodes meet")
                    ] = 29500,
    strategy: Annotated[
        str, typer.Option(help="several GPUs: auto (full: fsdp, adapters: ddp), ddp, fsdp or "
                          "deepspeed")
    ] = "auto",
    out: Annotated[
        Path | None, typer.Option(help="where to write the task (default: "
                                  "<output_dir>/skypilot.yaml)")
    ] = None,
    up: Annotated[
        bool, typer.Option("--up", help="launch it now with `sky launch` (SkyPilot installed "
                           "and a cloud set up: `sky check`)")
    ] = False,
) -> None:
    """Write a SkyPilot task that trains CONFIG on --nodes cloud nodes: setup installs
    ftagent, run starts the recipe on every node from SkyPilot's variables, the run folder
    is a bucket every node mounts. Launch it with `sky launch`, or --up."""
    import os
    import shutil
    import subprocess

    from ftagent.tools.models import ModelNotFoundError
    from ftagent.tools.train.skypilot import SkyJob, default_names, launch_command, write_task

    cfg, out_dir = _job_config(config, strategy)
    sky = shutil.which("sky")
    if up and sky is None:  # before writing anything
        raise fail("--up needs SkyPilot's `sky` command, which is not on PATH. Install it in "
                   "its own environment (its pins clash with ftagent's), e.g. `uv tool "
                   "install 'skypilot[aws]'` (or gcp, azure, kubernetes, ...), run `sky "
                   "check` until your cloud shows as enabled, then run this again; or "
                   "launch the written task yourself with `sky launch`")
    task_name, bucket_name = default_names(out_dir)
    try:
        job = SkyJob(name=name or task_name, bucket=bucket or bucket_name, nodes=nodes,
                     gpus=None if (gpus or "none").lower() in ("none", "0", "") else gpus,
                     processes_per_node=processes_per_node, cpus=cpus, infra=cloud,
                     disk_size=disk_size, port=port)
        path = write_task(cfg, config, job, out, strategy)
    except (ValueError, ModelNotFoundError) as exc:
        raise fail(str(exc)) from None
    shape = f"{nodes} node(s) x {job.gpus or f'{job.per_node} CPU process(es)'}"
    typer.echo(f"wrote {path}: {shape}; run folder in bucket {job.bucket}")
    cmd = launch_command(path, job.name, sky or "sky",
                         secrets=("HF_TOKEN",) if os.environ.get("HF_TOKEN") else ())
    if not up:
        typer.echo(f"launch with: {' '.join(cmd)}")
        return
    typer.echo(f"launching: {' '.join(cmd)}")
    code = subprocess.call(cmd)
    if code:
        raise fail(f"`sky launch` exited with status {code}; if no cloud is enabled, run "
                   f"`sky check`. The task stays in {path}", code)


def _job_config(config: Path, strategy: str):
    """The config a launcher writes a job for, and its output_dir: a known strategy, a
    config that loads, and no finished run in the way (finished runs are never
    overwritten)."""
    from ftagent.tools.config.train_config import load_config
    from ftagent.tools.train.launch import STRATEGIES

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
    return cfg, out_dir
