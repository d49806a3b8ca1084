"""Training on several machines: the launch builders' checks, `ftagent train --nodes` with
two "nodes" on this machine (separate processes, one CPU process each, gloo over loopback)
against one node with two processes, a resume after one of them is killed, and the Slurm
script `ftagent launch slurm` writes: valid bash, its requeue logic, and, run with the
variables Slurm sets and stand-ins for `srun` and `scontrol` (Slurm itself, not ftagent),
a real two-node training run."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DEMO_DATA, ROOT
from ftagent.tools.train import launch as tl
from ftagent.tools.train import slurm
from test_train_distributed import _config


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _losses(out: Path) -> dict[int, float]:
    """Step -> training loss, as global rank 0 logged them (one row per step)."""
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == sorted(set(steps)), steps  # each step once: one rank wrote
    return {r["step"]: r["loss"] for r in rows if "loss" in r}


# ---- pure builders ------------------------------------------------------------------


def test_launch_command_for_several_machines_is_what_accelerate_reads(tmp_path):
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    cmd = tl.launch_command("c.yaml", 2, "cpu", cpu_threads=1, num_machines=3, machine_rank=2,
                            main_address="10.1.2.3:29400")
    assert cmd[3] == "--multi_gpu"
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(cmd[3:]))
    # accelerate's --num_processes is the total; torchrun gets total / machines per node.
    assert (args.num_processes, args.num_machines, args.machine_rank) == (6, 3, 2)
    assert (args.main_process_ip, args.main_process_port) == ("10.1.2.3", 29400)
    # One process on each of two machines is still two processes: --multi_gpu, not --cpu.
    one_each = tl.launch_command("c.yaml", 1, "cpu", num_machines=2, machine_rank=1,
                                 main_address="[fe80::1]:29500")
    assert one_each[3] == "--multi_gpu" and "--cpu" not in one_each
    assert one_each[one_each.index("--main_process_ip") + 1] == "fe80::1"
    # The config file says machine 0; each machine's flag wins over it.
    cfg = tl.distributed_config("fsdp", 16, num_machines=2)
    assert (cfg["num_machines"], cfg["num_processes"]) == (2, 16)
    path = tl.write_accelerate_config(cfg, tmp_path / "a.yaml")
    gpu = tl.launch_command("c.yaml", 8, "cuda", extra_config_file=path, num_machines=2,
                            machine_rank=1, main_address="node1:29500")
    args, _, _ = _validate_launch_command(launch_command_parser().parse_args(gpu[3:]))
    assert args.use_fsdp and (args.num_processes, args.machine_rank) == (16, 1)
    # One machine is as before: a free port, no rank, no address.
    single = tl.launch_command("c.yaml", 2, "cpu")
    assert "--machine_rank" not in single and single[single.index("--main_process_port") + 1] \
        == "0"


@pytest.mark.parametrize(("machines", "rank", "address", "says"), [
    (2, 0, None, "need the main address"),
    (2, 2, "h:29500", "from 0 to 1"),
    (2, -1, "h:29500", "from 0 to 1"),
    (0, 0, None, "at least 1"),
    (2, 1, "h", "HOST:PORT"),
    (2, 1, "h:0", "HOST:PORT"),  # machine 0's free port is unknown to the others
    (2, 1, ":29500", "HOST:PORT"),
    (2, 1, "h:70000", "HOST:PORT"),
    (2, 1, "h:port", "HOST:PORT"),
])
def test_machine_layouts_are_checked(machines, rank, address, says):
    with pytest.raises(ValueError, match=says):
        tl.launch_command("c.yaml", 1, "cpu", num_machines=machines, machine_rank=rank,
                          main_address=address)


def test_slurm_job_checks_its_inputs():
    for bad, says in (({"nodes": 0}, "nodes"), ({"gpus_per_node": -1}, "gpus"),
                      ({"gpus_per_node": 4, "processes_per_node": 2}, "one process per GPU"),
                      ({"time": "1 day"}, "time"), ({"time": "12:5"}, "time"),
                      ({"port": 0}, "port"), ({"job_name": "a b"}, "job name"),
                      ({"partition": "gpu;rm"}, "partition"), ({"cpus_per_node": 0}, "cpus")):
        with pytest.raises(ValueError, match=says):
            slurm.SlurmJob(**{"nodes": 2, **bad})
    for ok in ("30", "12:00:00", "2-00:00:00", "1-12", "90:00"):
        assert slurm.SlurmJob(nodes=1, time=ok).time == ok
    assert slurm.SlurmJob(nodes=2, gpus_per_node=0).per_node == 1
    assert slurm.SlurmJob(nodes=2, gpus_per_node=8).per_node == 8
    with pytest.raises(ValueError, match="split evenly"):
        tl.distributed_config("ddp", 3, num_machines=2)


def test_sbatch_script_asks_slurm_for_the_nodes_and_is_valid_bash(tmp_path):
    job = slurm.SlurmJob(nodes=4, gpus_per_node=8, cpus_per_node=64, time="2-00:00:00",
                         partition="gpu", account="ml", job_name="ftagent-big", port=29411)
    text = slurm.sbatch_script("/shared/c.yaml", "/shared/out", job, "/opt/ftagent",
                               "/opt/venv/bin/python", "/shared/out/accelerate_config.yaml")
    header = [x.removeprefix("#SBATCH ") for x in text.splitlines() if x.startswith("#SBATCH")]
    assert header == ["--job-name=ftagent-big", "--nodes=4", "--ntasks-per-node=1",
                      "--gpus-per-node=8", "--cpus-per-task=64", "--time=2-00:00:00",
                      "--partition=gpu", "--account=ml", "--output=/shared/out/logs/%x-%j.log",
                      "--open-mode=append", "--requeue", "--signal=B:USR1@120"]
    assert "--output=/shared/out/logs/%x-%j-%N.log" in text  # one log per node
    launch = slurm.node_launch("/shared/c.yaml", job, "/opt/venv/bin/python",
                               "/shared/out/accelerate_config.yaml")
    assert launch in text and '--machine_rank "$SLURM_NODEID"' in launch
    assert '--main_process_ip "$main_host"' in launch and "--num_processes 32" in launch
    assert "--main_process_port 29411" in launch and "--num_cpu_threads" not in launch
    assert 'scontrol show hostnames "$SLURM_JOB_NODELIST"' in text
    path = tmp_path / "train.sbatch"
    path.write_text(text)
    check = subprocess.run(["bash", "-n", str(path)], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    with pytest.raises(ValueError, match="spaces"):
        slurm.sbatch_script("/shared/c.yaml", "/shared/my out", job, "/opt/ftagent")


def test_a_resume_on_another_number_of_processes_is_refused(tmp_path, tiny_model, small_data,
                                                           monkeypatch):
    """Requeued on fewer nodes, a run would take other rows each step: the fingerprint
    holds the process count (torchrun's WORLD_SIZE), and a resume must match it."""
    from ftagent.tools.config.train_config import load_config
    from ftagent.tools.train.resume import FINGERPRINT_FILE, ResumeMismatch, check_resume

    cfg = load_config(_config(tmp_path, tiny_model, small_data))
    out, ckpt = tmp_path / "out", tmp_path / "out" / "checkpoint-2"
    ckpt.mkdir(parents=True)
    monkeypatch.setenv("WORLD_SIZE", "2")
    assert check_resume(out, cfg, None)["processes"] == 2  # a fresh start writes it
    check_resume(out, cfg, str(ckpt))  # the same count resumes
    monkeypatch.setenv("WORLD_SIZE", "4")
    with pytest.raises(ResumeMismatch, match="processes: checkpoint has 2, this config has 4"):
        check_resume(out, cfg, str(ckpt))
    # A run whose fingerprint predates the count still resumes.
    saved = json.loads((out / FINGERPRINT_FILE).read_text())
    del saved["processes"]
    (out / FINGERPRINT_FILE).write_text(json.dumps(saved))
    check_resume(out, cfg, str(ckpt))


# ---- the Slurm script's own logic, with stand-ins for srun and scontrol ----------------

FAKE_SRUN = '''#!{python}
"""Stands in for Slurm's srun: one task per node of $SLURM_NNODES, each with its
SLURM_NODEID, output appended to --output with %x, %j and %N filled in."""
import os, subprocess, sys, time
args = sys.argv[1:]
with open(os.environ["FAKE_SLURM_CALLS"], "a") as f:
    f.write("srun " + " ".join(args[:3]) + "\\n")
mode = os.environ.get("FAKE_SRUN", "run")
if mode == "fail":
    sys.exit(1)
if mode == "sleep":
    time.sleep(3)
    sys.exit(0)
out = None
while args[0].startswith("--"):
    if args[0].startswith("--output="):
        out = args[0].split("=", 1)[1]
    args.pop(0)
env = os.environ
procs = []
for node in range(int(env["SLURM_NNODES"])):
    name = out.replace("%x", env["SLURM_JOB_NAME"]).replace("%j", env["SLURM_JOB_ID"])
    log = open(name.replace("%N", f"node{{node}}"), "a")
    procs.append(subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT,
                 env={{**env, "SLURM_NODEID": str(node), "SLURM_PROCID": str(node)}}))
sys.exit(max(p.wait() for p in procs))
'''
FAKE_SCONTROL = '''#!/bin/sh
# Stands in for Slurm's scontrol: the node list's host names, one a line; requeue recorded.
echo "scontrol $*" >> "$FAKE_SLURM_CALLS"
if [ "$1 $2" = "show hostnames" ]; then echo "$3" | tr , '\\n'; fi
'''


def _fake_slurm(tmp_path: Path, nodes: int, **more: str) -> dict:
    """PATH with the stand-ins, and the variables Slurm sets for a batch job."""
    bin_dir = tmp_path / "fake-slurm"
    bin_dir.mkdir(exist_ok=True)
    for name, text in (("srun", FAKE_SRUN.format(python=sys.executable)),
                       ("scontrol", FAKE_SCONTROL)):
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {**os.environ, "PATH": f"{bin_dir}:{os.environ['PATH']}",
            "FAKE_SLURM_CALLS": str(tmp_path / "calls.log"), "SLURM_JOB_ID": "4242",
            "SLURM_JOB_NAME": "ftagent-test", "SLURM_NNODES": str(nodes),
            "SLURM_JOB_NODELIST": "localhost", "SLURM_CPUS_PER_TASK": "1", **more}


def _calls(tmp_path: Path) -> list[str]:
    path = tmp_path / "calls.log"
    return path.read_text().splitlines() if path.exists() else []


def _script(tmp_path: Path, **job) -> Path:
    path = tmp_path / "train.sbatch"
    path.write_text(slurm.sbatch_script(tmp_path / "c.yaml", tmp_path / "out",
                                        slurm.SlurmJob(**{"nodes": 2, **job}), ROOT))
    return path


def test_a_failed_attempt_requeues_until_the_restarts_run_out(tmp_path):
    script = _script(tmp_path, max_restarts=2)
    env = _fake_slurm(tmp_path, 2, FAKE_SRUN="fail", SLURM_RESTART_COUNT="1")
    run = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1
    assert "training exited with status 1: requeueing job 4242" in run.stdout
    calls = _calls(tmp_path)
    assert calls[0].startswith("srun --nodes=2") and calls[1:] == ["scontrol requeue 4242"]
    env["SLURM_RESTART_COUNT"] = "2"
    run = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 1 and "giving up" in run.stderr
    assert _calls(tmp_path).count("scontrol requeue 4242") == 1


def test_the_time_limit_signal_requeues_and_a_finished_run_is_left_alone(tmp_path):
    script = _script(tmp_path)
    env = _fake_slurm(tmp_path, 2, FAKE_SRUN="sleep")
    proc = subprocess.Popen(["bash", str(script)], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 20
    while not _calls(tmp_path) and time.time() < deadline:  # srun started: the trap is set
        time.sleep(0.05)
    proc.send_signal(signal.SIGUSR1)  # what --signal=B:USR1@120 sends before the limit
    output, _ = proc.communicate(timeout=30)
    assert "time limit near: requeueing job 4242" in output
    assert _calls(tmp_path)[-1] == "scontrol requeue 4242"
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "result.json").write_text("{}")
    run = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                         timeout=60)
    assert run.returncode == 0 and "finished run" in run.stdout
    assert sum(c.startswith("srun") for c in _calls(tmp_path)) == 1  # not started again
    wrong = subprocess.run(["bash", str(script), "node"], capture_output=True, text=True,
                           env={**env, "SLURM_NNODES": "3", "SLURM_NODEID": "0"}, timeout=60)
    assert wrong.returncode == 2 and "written for 2 node(s), Slurm gave 3" in wrong.stderr


# ---- real training on two "nodes" -----------------------------------------------------


@pytest.fixture(scope="module")
def shared(tmp_path_factory):
    """A folder and data the runs below share (30 demo rows, as `small_data`)."""
    base = tmp_path_factory.mktemp("multinode")
    lines = DEMO_DATA.read_text(encoding="utf-8").splitlines()
    (base / "small.jsonl").write_text("\n".join(lines[::8]) + "\n", encoding="utf-8")
    return base


@pytest.fixture(scope="module")
def one_node_losses(shared, tiny_model):
    """The reference: one node, two processes (test_train_distributed's run)."""
    from ftagent.tools.train.jobs import run_training_job

    path = _config(shared, tiny_model, shared / "small.jsonl", out="one-node")
    result = run_training_job(path, shared / "one-node", poll_s=0.2, num_processes=2)
    assert result["world_size"] == 2 and result["global_step"] == 4
    return _losses(shared / "one-node")


@pytest.mark.timeout(300)
def test_two_nodes_train_like_one_node_with_two_processes(shared, tiny_model, one_node_losses):
    path = _config(shared, tiny_model, shared / "small.jsonl", out="two-nodes")
    out = shared / "two-nodes"
    address = f"127.0.0.1:{_free_port()}"
    # Two cores for both "machines": one thread per process, as the one-node run has.
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    nodes = [subprocess.Popen(
        [sys.executable, "-m", "ftagent", "train", str(path), "--nodes", "2", "--node-rank",
         str(rank), "--main-address", address, "--num-processes", "1"],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=ROOT)
        for rank in (1, 0)]  # machine 1 first: it waits for machine 0 at the rendezvous
    said = [p.communicate(timeout=280)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], said
    result = json.loads((out / "result.json").read_text())
    assert result["world_size"] == 2 and result["global_step"] == 4
    assert _losses(out) == pytest.approx(one_node_losses, abs=1e-5)
    assert list(_losses(out)) == [1, 2, 3, 4]
    # Each machine's launcher keeps its own pid and log in the shared folder.
    assert (out / "job.json").exists() and (out / "job.node1.json").exists()
    assert "Traceback" not in (out / "train.node1.log").read_text()
    assert all("done: 4 steps" in s for s in said)
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-2", "checkpoint-4"]


@pytest.mark.timeout(300)
def test_the_slurm_script_trains_on_two_nodes(shared, tiny_model, one_node_losses, tmp_path):
    from ftagent.agent.cli.main import app
    from typer.testing import CliRunner

    path = _config(shared, tiny_model, shared / "small.jsonl", out="slurm")
    out = shared / "slurm"
    written = CliRunner().invoke(app, ["launch", "slurm", str(path), "--nodes", "2",
                                       "--gpus-per-node", "0", "--port", str(_free_port()),
                                       "--time", "10"])
    assert written.exit_code == 0, written.output
    script = out / slurm.SCRIPT_FILE
    assert f"sbatch {script}" in written.output and (out / "logs").is_dir()
    env = _fake_slurm(tmp_path, 2, SLURM_JOB_NAME="ftagent-slurm")
    run = subprocess.run(["bash", str(script)], env=env, capture_output=True, text=True,
                         timeout=280)
    logs = {p.name: p.read_text() for p in (out / "logs").iterdir()}
    assert run.returncode == 0, run.stdout + run.stderr + json.dumps(logs)[-3000:]
    assert sorted(logs) == ["ftagent-slurm-4242-node0.log", "ftagent-slurm-4242-node1.log"]
    assert "node 1 of 2" in logs["ftagent-slurm-4242-node1.log"]
    assert "rendezvous localhost:" in logs["ftagent-slurm-4242-node0.log"]
    assert json.loads((out / "result.json").read_text())["world_size"] == 2
    assert _losses(out) == pytest.approx(one_node_losses, abs=1e-5)


def test_cli_refuses_bad_layouts_and_prints_the_node_command(tmp_path, tiny_model, small_data,
                                                            monkeypatch):
    from ftagent.agent.cli.main import app
    from typer.testing import CliRunner

    path = _config(tmp_path, tiny_model, small_data)
    runner = CliRunner()
    cmd = runner.invoke(app, ["train", str(path), "--nodes", "2", "--node-rank", "1",
                              "--main-address", "10.0.0.1:29500", "--print-command"])
    assert cmd.exit_code == 0, cmd.output
    assert ("--num_processes 2 --num_machines 2 --machine_rank 1 --main_process_ip 10.0.0.1"
            in cmd.output) and "--main_process_port 29500" in cmd.output
    for args, says in ((["--nodes", "2"], "main address"),
                       (["--nodes", "2", "--node-rank", "2", "--main-address", "h:1"], "rank"),
                       (["--nodes", "2", "--main-address", "h"], "HOST:PORT"),
                       (["--nodes", "2", "--main-address", "h:1", "--launch", "none"],
                        "--launch accelerate")):
        bad = runner.invoke(app, ["train", str(path), *args, "--print-command"])
        assert bad.exit_code == 2 and says in bad.output, (args, bad.output)
    monkeypatch.setattr(tl, "cuda_devices", lambda: 4)
    gpu = runner.invoke(app, ["train", str(path), "--nodes", "2", "--main-address", "h:1",
                              "--strategy", "fsdp", "--print-command"])
    assert gpu.exit_code == 0, gpu.output
    import yaml

    accel = yaml.safe_load((tmp_path / "out" / tl.CONFIG_FILE).read_text())
    assert (accel["num_processes"], accel["num_machines"]) == (8, 2)
    script = runner.invoke(app, ["launch", "slurm", str(path), "--nodes", "2",
                                 "--gpus-per-node", "4", "--strategy", "fsdp",
                                 "--out", str(tmp_path / "job.sbatch")])
    assert script.exit_code == 0, script.output
    text = (tmp_path / "job.sbatch").read_text()
    assert f"--config_file {tmp_path / 'out' / tl.CONFIG_FILE}" in text
    assert "#SBATCH --gpus-per-node=4" in text and "#SBATCH --job-name=ftagent-out" in text
    bad = runner.invoke(app, ["launch", "slurm", str(path), "--time", "soon"])
    assert bad.exit_code == 2 and "time must be" in bad.output


def _kill_tree(proc: subprocess.Popen) -> None:
    """SIGKILL a launcher and everything under it (torchrun's workers included)."""
    import psutil

    try:
        procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    for p in procs:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass
    proc.wait(timeout=60)


def _start_nodes(path: Path, log_dir: Path) -> list[subprocess.Popen]:
    """Machines 0 and 1, one CPU process each, as `ftagent train --nodes 2` starts them."""
    address = f"127.0.0.1:{_free_port()}"
    procs = []
    for rank in (0, 1):
        log = open(log_dir / f"node{rank}.log", "ab")
        cmd = tl.launch_command(path, 1, "cpu", cpu_threads=1, num_machines=2,
                                machine_rank=rank, main_address=address)
        procs.append(subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT))
    return procs


@pytest.mark.timeout(400)
def test_after_a_node_dies_both_resume_from_the_last_complete_checkpoint(shared, tiny_model):
    """Machine 1 is killed (SIGKILL, launcher and worker) once a checkpoint is complete and
    training has gone past it; machine 0 then stops too (as srun --kill-on-bad-exit does).
    Started again, both resume from that checkpoint, and every step after it has the loss
    of an uninterrupted run: the same data order, and each rank's RNG state (dropout on)."""
    from ftagent.tools.config.train_config import apply_overrides, default_config, save_config
    from ftagent.tools.train.jobs import run_training_job
    from ftagent.tools.train.recipe import last_complete_checkpoint, read_metrics

    def config(out: str) -> Path:
        cfg = default_config(str(tiny_model), "lora", str(shared / "small.jsonl"), None,
                             str(shared / out), 30, 1_000_000, False)
        cfg = apply_overrides(cfg, {"max_steps": 16, "save_steps": 4, "batch_size": 2,
                                    "lora.dropout": 0.05, "seed": 7, "report_to": []})
        return save_config(cfg, shared / f"{out}.yaml")

    reference = run_training_job(config("whole"), shared / "whole", poll_s=0.2, num_processes=2)
    assert reference["global_step"] == 16
    path, out = config("dies"), shared / "dies"
    nodes = _start_nodes(path, shared)
    try:
        deadline, killed = time.time() + 300, None
        while nodes[1].poll() is None and time.time() < deadline:
            ckpt = last_complete_checkpoint(out / "checkpoints")
            done = max((r["step"] for r in read_metrics(out) if "loss" in r), default=0)
            if ckpt and done > int(ckpt.rsplit("-", 1)[1]):
                _kill_tree(nodes[1])
                killed = done
                break
            time.sleep(0.005)
        assert killed, "training ended before machine 1 could be killed past a checkpoint"
        try:  # machine 0 notices its peer is gone, or is stopped as Slurm would stop it
            nodes[0].wait(timeout=30)
        except subprocess.TimeoutExpired:
            _kill_tree(nodes[0])
    finally:
        for node in nodes:
            if node.poll() is None:
                _kill_tree(node)
    assert not (out / "result.json").exists()
    resume_from = last_complete_checkpoint(out / "checkpoints")
    step = int(resume_from.rsplit("-", 1)[1])
    assert step < 16
    nodes = _start_nodes(path, shared)
    codes = [n.wait(timeout=300) for n in nodes]
    assert codes == [0, 0], (shared / "node1.log").read_text()[-3000:]
    result = json.loads((out / "result.json").read_text())
    assert result["resumed_from"] == resume_from and result["global_step"] == 16
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    begins = [i for i, r in enumerate(rows) if r.get("event") == "begin"]
    assert len(begins) == 2 and rows[begins[1]]["step"] == step
    again = {r["step"]: r["loss"] for r in rows[begins[1]:] if "loss" in r}
    whole = _losses(shared / "whole")
    assert list(again) == list(range(step + 1, 17))
    assert again == pytest.approx({s: whole[s] for s in again}, abs=1e-5)



@pytest.mark.timeout(300)
def test_the_skypilot_task_trains_on_two_nodes(shared, tiny_model, one_node_losses, tmp_path):
    """The task's run section, run as SkyPilot runs it on each node: a bash script with
    SkyPilot's variables, after its file mounts are in place (here: copies under one
    folder, and one shared folder for the bucket). Each "node" is pinned to one core, as
    a machine of its own would count its cores."""
    import shutil

    import yaml
    from ftagent.tools.config.train_config import load_config
    from ftagent.tools.train import skypilot

    path = _config(shared, tiny_model, shared / "small.jsonl", out="sky")
    root = tmp_path / "nodes"  # stands for / on the nodes
    venv_python = tmp_path / "ftagent-venv" / "bin" / "python"  # what setup installs
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(f'#!/bin/sh\nexec {sys.executable} "$@"\n')
    venv_python.chmod(0o755)
    job = skypilot.SkyJob(name="ftagent-sky", bucket="ftagent-sky-test", nodes=2, gpus=None,
                          port=_free_port())
    task = skypilot.write_task(load_config(path), path, job, tmp_path / "task.yaml",
                               remote=str(root), python=f'"{venv_python}"')
    spec = yaml.safe_load(task.read_text())
    for node_path, source in spec["file_mounts"].items():  # what SkyPilot copies or mounts
        target = Path(node_path)
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(source, dict):
            target.mkdir()  # the bucket: one folder all nodes see
        elif Path(source).is_dir():
            shutil.copytree(source, target)
        else:
            shutil.copy(source, target)
    (tmp_path / "run.sh").write_text(spec["run"])
    env = {**os.environ, "SKYPILOT_NUM_NODES": "2", "SKYPILOT_NUM_GPUS_PER_NODE": "0",
           "SKYPILOT_NODE_IPS": "127.0.0.1\n127.0.0.1"}
    nodes = [subprocess.Popen(["taskset", "-c", str(rank % (os.cpu_count() or 1)), "bash",
                               str(tmp_path / "run.sh")],
                              env={**env, "SKYPILOT_NODE_RANK": str(rank)}, cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (1, 0)]
    said = [p.communicate(timeout=280)[0] for p in nodes]
    assert [p.returncode for p in nodes] == [0, 0], said
    assert "node 1 of 2" in said[0] and "rendezvous 127.0.0.1:" in said[1]
    out = root / "run"
    assert json.loads((out / "result.json").read_text())["world_size"] == 2
    assert _losses(out) == pytest.approx(one_node_losses, abs=1e-5)
    again = subprocess.run(["bash", str(tmp_path / "run.sh")], capture_output=True, text=True,
                           env={**env, "SKYPILOT_NODE_RANK": "0"}, timeout=60)
    assert again.returncode == 0 and "holds a finished run" in again.stdout
    shutil.rmtree(out)
    wrong = subprocess.run(["bash", str(tmp_path / "run.sh")], capture_output=True, text=True,
                           env={**env, "SKYPILOT_NODE_RANK": "0", "SKYPILOT_NUM_NODES": "3"},
                           timeout=60)
    assert wrong.returncode == 2 and "written for 2 node(s), SkyPilot gave 3" in wrong.stderr
