"""The SkyPilot task `ftagent launch skypilot` writes, read by SkyPilot's own parser, and
`--up` without SkyPilot. (Its run section trains on two "nodes" in test_multinode.py.)

SkyPilot cannot share ftagent's environment (it pins click < 8.2 and uvicorn < 0.36;
huggingface_hub needs click >= 8.4.2), so it lives in its own venv, `.venv-sky`
(`make sky-env`), and the parser runs there in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import ROOT
from ftagent.tools.train import skypilot
from test_train_distributed import _config

SKY_PYTHON = Path(os.environ.get("FTAGENT_SKY_PYTHON", ROOT / ".venv-sky" / "bin" / "python"))

# SkyPilot reads the task offline but canonicalises accelerator names against its catalog,
# which it would download: the rows of its common catalog the test's names need, where it
# keeps its downloaded copy.
CATALOG = {"accelerators.csv": "AcceleratorName,Clouds\nH100,\"['AWS', 'GCP', 'Azure']\"\n",
           "metadata.csv": "GPU,MemoryGB,Manufacturer\nH100,80,NVIDIA\n"}

READ = """
import json, sys
import sky
task = sky.Task.from_yaml(sys.argv[1])
task.validate()
(res,) = task.resources
print(json.dumps({
    "name": task.name, "num_nodes": task.num_nodes, "accelerators": res.accelerators,
    "cloud": str(res.cloud), "workdir": task.workdir, "file_mounts": task.file_mounts,
    "storage": {k: [v.name, v.mode.value] for k, v in task.storage_mounts.items()},
    "setup": task.setup, "run": task.run}))
"""


def _sky_read(task: Path, home: Path) -> dict:
    if not SKY_PYTHON.exists():
        pytest.skip(f"SkyPilot's own venv is missing ({SKY_PYTHON}): `make sky-env`")
    version = subprocess.run([str(SKY_PYTHON), "-c", "from sky.skylet import constants; "
                              "print(constants.CATALOG_SCHEMA_VERSION)"], capture_output=True,
                             text=True, check=True, env={**os.environ, "HOME": str(home)})
    catalog = home / ".sky" / "catalogs" / version.stdout.strip() / "common"
    catalog.mkdir(parents=True, exist_ok=True)
    for name, text in CATALOG.items():
        (catalog / name).write_text(text)
    run = subprocess.run([str(SKY_PYTHON), "-c", READ, str(task)], capture_output=True,
                         text=True, env={**os.environ, "HOME": str(home)}, timeout=120)
    assert run.returncode == 0, run.stderr[-3000:]
    return json.loads(run.stdout.splitlines()[-1])


def test_the_task_is_what_skypilot_reads(tmp_path, tiny_model, small_data):
    from ftagent.agent.cli.main import app
    from ftagent.tools.config.train_config import load_config, save_config
    from typer.testing import CliRunner

    path = _config(tmp_path, tiny_model, small_data, out="big")
    save_config(load_config(path).model_copy(update={"bf16": "auto"}), path)
    written = CliRunner().invoke(app, ["launch", "skypilot", str(path), "--gpus", "H100:8",
                                       "--nodes", "2", "--cloud", "aws", "--bucket",
                                       "ftagent-test-bucket"])
    assert written.exit_code == 0, written.output
    task = tmp_path / "big" / skypilot.TASK_FILE
    assert f"sky launch -c ftagent-big {task}" in written.output
    read = _sky_read(task, tmp_path / "home")
    assert (read["name"], read["num_nodes"], read["accelerators"], read["cloud"]) == (
        "ftagent-big", 2, {"H100": 8}, "AWS")
    assert read["workdir"] == str(ROOT)  # this source, installed by setup
    assert read["storage"] == {"/ftagent/run": ["ftagent-test-bucket", "MOUNT_CACHED"]}
    inputs = tmp_path / "big" / skypilot.INPUTS
    assert read["file_mounts"] == {"/ftagent/inputs": str(inputs),
                                   "/ftagent/data/train-small.jsonl": str(small_data),
                                   "/ftagent/model": str(tiny_model)}
    assert "-c constraints.txt ." in read["setup"]
    # The nodes' config points at the nodes' folders; 16 GPUs in all: DDP for LoRA.
    node_cfg = yaml.safe_load((inputs / "config.yaml").read_text())
    assert (node_cfg["output_dir"], node_cfg["train_file"], node_cfg["model"]) == (
        "/ftagent/run", "/ftagent/data/train-small.jsonl", "/ftagent/model")
    accel = yaml.safe_load((inputs / "accelerate_config.yaml").read_text())
    assert (accel["distributed_type"], accel["num_processes"], accel["num_machines"]) == (
        "MULTI_GPU", 16, 2)
    # bf16 "auto": by the H100's row in the GPU table, not by this machine.
    assert accel["mixed_precision"] == "bf16"
    assert "--config_file /ftagent/inputs/accelerate_config.yaml" in read["run"]
    assert '--machine_rank "$SKYPILOT_NODE_RANK"' in read["run"]
    subprocess.run(["bash", "-n"], input=read["run"], text=True, check=True)
    subprocess.run(["bash", "-n"], input=read["setup"], text=True, check=True)


def test_up_without_skypilot_says_what_to_set_up(tmp_path, tiny_model, small_data,
                                                 monkeypatch):
    from ftagent.agent.cli.main import app
    from typer.testing import CliRunner

    path = _config(tmp_path, tiny_model, small_data, out="up")
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no `sky` anywhere
    result = CliRunner().invoke(app, ["launch", "skypilot", str(path), "--up"])
    assert result.exit_code == 2
    assert "`sky` command, which is not on PATH" in result.output
    assert "sky check" in result.output
    assert not (tmp_path / "up" / skypilot.TASK_FILE).exists()


def test_the_job_checks_its_inputs():
    ok = {"name": "ftagent-x", "bucket": "ftagent-x-1a2b"}
    for bad, says in (({"gpus": "H100:0"}, "NAME:COUNT"), ({"gpus": "H100 x8"}, "NAME:COUNT"),
                      ({"bucket": "Has_Upper"}, "bucket"), ({"name": "-x"}, "name"),
                      ({"gpus": "L4:2", "processes_per_node": 4}, "one process per GPU"),
                      ({"cpus": "lots"}, "cpus"), ({"nodes": 0}, "nodes")):
        with pytest.raises(ValueError, match=says):
            skypilot.SkyJob(**{**ok, **bad})
    assert skypilot.SkyJob(**ok, gpus="A100-80GB:4").per_node == 4
    assert skypilot.SkyJob(**ok, gpus="L4").per_node == 1
    assert skypilot.SkyJob(**ok, gpus=None, processes_per_node=3).per_node == 3
    name, bucket = skypilot.default_names("runs/My Run_2")
    assert name == "ftagent-my-run-2" and bucket.startswith("ftagent-my-run-2-")
    skypilot.SkyJob(name=name, bucket=bucket)  # the defaults are valid names
