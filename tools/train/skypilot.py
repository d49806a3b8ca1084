"""A SkyPilot task that trains one config on a cluster of cloud nodes.

`task_yaml` is pure (tested with SkyPilot's own parser, and its run section run with the
variables SkyPilot sets); `write_task` prepares the files it refers to and writes it.
The task:

- **resources**: `--nodes` nodes with the given accelerators (`H100:8`), or CPU nodes;
  on a cloud or infra SkyPilot knows (`aws`, `gcp/us-central1`, `k8s`), else its choice.
- **workdir**: this ftagent's source folder, which SkyPilot copies to every node
  (leaving out what .gitignore names); **setup** installs it there into its own venv
  (`$HOME/ftagent-venv`, Python 3.11 through uv) with the versions in constraints.txt.
  From an installed wheel (no source folder), setup installs `ftagent==VERSION`.
- **file_mounts**: the run folder (the config's output_dir) is a bucket mounted on every
  node at `/ftagent/run` (SkyPilot's MOUNT_CACHED mode: writes land on local disk and are
  uploaded in the background, with full file semantics such as appending to
  metrics.jsonl; SkyPilot waits for the upload before the job ends). Every node resumes
  from the checkpoints there, and the bucket outlives the cluster, so the result is in it.
  The node's config (paths rewritten to the nodes' folders), the accelerate config for
  several GPUs and the data files are copied to every node; a model folder too, while a
  Hugging Face hub id is downloaded on each node by setup (pass HF_TOKEN for gated models).
- **run**: the per-node function every launcher shares (`nodes.node_function`), with the
  rank, node count, GPUs per node and the head node's IP from SkyPilot's variables
  (SKYPILOT_NODE_RANK, SKYPILOT_NUM_NODES, SKYPILOT_NUM_GPUS_PER_NODE, SKYPILOT_NODE_IPS).
  A finished run (result.json in the bucket) is not started again.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass
from pathlib import Path

from ftagent.tools.train import nodes

TASK_FILE = "skypilot.yaml"
INPUTS = "skypilot-inputs"  # next to the task file: the node config and accelerate config
REMOTE = "/ftagent"
PYTHON = '"$HOME/ftagent-venv/bin/python"'
DEFAULT_PORT = 29500
# SkyPilot's task and cluster names (sky/task.py's _VALID_NAME_REGEX).
_NAME = re.compile(r"^[a-zA-Z0-9]+(?:[._-]{1,2}[a-zA-Z0-9]+)*$")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$")  # valid on S3, GCS and Azure
_GPUS = re.compile(r"^([A-Za-z0-9][A-Za-z0-9_.-]*)(?::(\d+))?$")
_INFRA = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_./*-]*$")


@dataclass(frozen=True)
class SkyJob:
    """What the task asks SkyPilot for. gpus: accelerators per node as SkyPilot writes
    them (`H100:8`, `A100-80GB:4`, `L4`); None trains on CPU nodes, `processes_per_node`
    processes each (default 1)."""

    name: str
    bucket: str
    nodes: int = 1
    gpus: str | None = "H100:8"
    processes_per_node: int | None = None
    cpus: str | None = None  # SkyPilot's form: "8", "8+"
    infra: str | None = None  # SkyPilot's --infra: aws, gcp/us-central1, k8s, ...
    disk_size: int | None = None  # GB per node: the cached mount and model live there
    port: int = DEFAULT_PORT

    def __post_init__(self) -> None:
        if self.nodes < 1:
            raise ValueError(f"nodes must be at least 1, got {self.nodes}")
        if not _NAME.match(self.name):
            raise ValueError(f"the name may hold letters and digits joined by . _ -, got "
                             f"'{self.name}'")
        if not _BUCKET.match(self.bucket):
            raise ValueError(f"a bucket name is 3-63 lower-case letters, digits and -, got "
                             f"'{self.bucket}'")
        if self.gpus is not None:
            m = _GPUS.match(self.gpus)
            if not m or (m.group(2) is not None and int(m.group(2)) < 1):
                raise ValueError(f"gpus must be NAME or NAME:COUNT (H100:8), got '{self.gpus}'")
            if self.processes_per_node not in (None, self.gpus_per_node):
                raise ValueError("with GPUs, each node runs one process per GPU: leave "
                                 "processes per node out")
        if self.processes_per_node is not None and self.processes_per_node < 1:
            raise ValueError(f"processes per node must be at least 1, got "
                             f"{self.processes_per_node}")
        if self.infra is not None and not _INFRA.match(self.infra):
            raise ValueError(f"infra must be a cloud, cloud/region or k8s, got '{self.infra}'")
        if self.cpus is not None and not re.match(r"^\d+(\.\d+)?\+?$", self.cpus):
            raise ValueError(f"cpus must be a count, or a count and + (8+), got '{self.cpus}'")
        if not 0 < self.port < 65536:
            raise ValueError(f"port must be from 1 to 65535, got {self.port}")

    @property
    def gpus_per_node(self) -> int:
        if self.gpus is None:
            return 0
        count = _GPUS.match(self.gpus).group(2)
        return int(count) if count else 1

    @property
    def per_node(self) -> int:
        return self.gpus_per_node or self.processes_per_node or 1


def default_names(output_dir: str | Path) -> tuple[str, str]:
    """(task name, bucket name) for a run folder: the bucket name must be unique in its
    cloud, so it carries a hash of the folder's absolute path."""
    path = Path(output_dir).resolve()
    base = re.sub(r"[^a-z0-9]+", "-", path.name.lower()).strip("-")[:40] or "run"
    digest = hashlib.sha1(str(path).encode()).hexdigest()[:8]
    return f"ftagent-{base}", f"ftagent-{base}-{digest}"


def remote_paths(remote: str = REMOTE) -> dict[str, str]:
    """The folders every node sees."""
    return {"run": f"{remote}/run", "inputs": f"{remote}/inputs", "data": f"{remote}/data",
            "model": f"{remote}/model"}


class _Literal(str):
    """A string YAML writes as a block (`|`), for the shell sections."""


def _dump(data: dict) -> str:
    import yaml

    class Dumper(yaml.SafeDumper):
        pass

    Dumper.add_representer(_Literal, lambda d, s: d.represent_scalar(
        "tag:yaml.org,2002:str", str(s), style="|"))
    return yaml.dump(data, Dumper=Dumper, sort_keys=False, width=100)


def setup_script(source: str | Path | None, version: str, hub_model: str | None,
                 torch: str | None = None) -> str:
    """Install ftagent on a node: from the synced source folder (the task's workdir, where
    setup runs) with the tested versions (constraints.txt; torch, which it leaves out, at
    this machine's version), or the released package; then a hub model."""
    py = PYTHON
    lines = [
        "set -euo pipefail",
        'uv="$HOME/.local/bin/uv"  # SkyPilot installs uv there; if not, its installer',
        '"$uv" -V >/dev/null 2>&1 || curl -LsSf https://astral.sh/uv/install.sh '
        '| UV_INSTALL_DIR="$HOME/.local/bin" sh',
        f'[ -x {py} ] || "$uv" venv --python 3.11 "$HOME/ftagent-venv"',
    ]
    if source is not None:
        pin = f" {shlex.quote(f'torch=={torch}')}" if torch else ""
        lines.append(f'"$uv" pip install --python {py} -c constraints.txt .{pin}')
    else:
        lines.append(f'"$uv" pip install --python {py} {shlex.quote(f"ftagent=={version}")}')
    if hub_model:
        lines.append(f'"$HOME/ftagent-venv/bin/hf" download {shlex.quote(hub_model)}')
    return "\n".join(lines) + "\n"


def run_script(job: SkyJob, remote: str = REMOTE, python: str = PYTHON,
               accelerate_config: bool = False) -> str:
    """The run section: every node runs it with SkyPilot's variables set."""
    paths = remote_paths(remote)
    accel = f"{paths['inputs']}/accelerate_config.yaml" if accelerate_config else None
    node = nodes.node_function(f"{paths['inputs']}/config.yaml", job.nodes, job.per_node,
                               job.gpus_per_node, job.port, nodes.SKYPILOT, python,
                               accelerate_config=accel, replace=False)
    done = shlex.quote(f"{paths['run']}/result.json")
    # No exec and no exit: SkyPilot appends the wait for the cached mount's upload.
    return f"""{node}
if [ -f {done} ]; then
    echo "{paths['run']} holds a finished run (result.json): nothing to do"
else
    ftagent_node
fi
"""


def task_yaml(job: SkyJob, mounts: dict[str, str], source: str | Path | None,
              version: str = "0.1.0", hub_model: str | None = None, remote: str = REMOTE,
              python: str = PYTHON, accelerate_config: bool = False,
              config_path: str = "", torch: str | None = None) -> str:
    """The task's text. `mounts`: node path -> local path of the files every node gets
    (the inputs folder, data files, a model folder); `source`: ftagent's source folder,
    synced as the workdir (None: install the released package); `torch`: the version
    setup installs with it (default: this machine's)."""
    if torch is None:
        from importlib.metadata import version as installed

        torch = installed("torch").split("+")[0]  # 2.13.0+cpu: the same release for CUDA
    resources: dict = {}
    if job.infra:
        resources["infra"] = job.infra
    if job.gpus:
        resources["accelerators"] = job.gpus
    if job.cpus:
        resources["cpus"] = job.cpus
    if job.disk_size:
        resources["disk_size"] = job.disk_size
    task: dict = {"name": job.name, "num_nodes": job.nodes}
    if resources:
        task["resources"] = resources
    if source is not None:
        task["workdir"] = str(source)
    file_mounts: dict = {remote_paths(remote)["run"]: {"name": job.bucket,
                                                       "mode": "MOUNT_CACHED"}}
    file_mounts.update(mounts)
    task["file_mounts"] = file_mounts
    task["setup"] = _Literal(setup_script(source, version, hub_model, torch))
    task["run"] = _Literal(run_script(job, remote, python, accelerate_config))
    shape = f"{job.nodes} node(s) x {job.gpus or f'{job.per_node} CPU process(es)'}"
    header = (f"# Written by `ftagent launch skypilot`: trains {config_path}\n"
              f"# on {shape}. The run folder is bucket {job.bucket}, at "
              f"{remote_paths(remote)['run']} on every node.\n"
              f"#   launch: sky launch -c {job.name} THIS_FILE   (or add --up to "
              "`ftagent launch skypilot`)\n"
              f"#   follow: sky logs {job.name}; stop paying: sky down {job.name} "
              "(the bucket stays)\n")
    return header + _dump(task)


# ---- I/O ----------------------------------------------------------------------------


def source_folder() -> Path | None:
    """This ftagent's source folder (a checkout with pyproject.toml), or None for a wheel."""
    import ftagent

    root = Path(ftagent.__file__).resolve().parent.parent
    return root if (root / "pyproject.toml").is_file() and (root / "tools").is_dir() else None


def model_on_nodes(model: str) -> tuple[str | None, str | None]:
    """(local folder to copy to the nodes, hub id the nodes download): a folder here is
    copied, a model from the Hugging Face cache is downloaded by its id."""
    from ftagent.tools.models import ModelNotFoundError, resolve_model

    try:
        resolved = resolve_model(model)
    except ModelNotFoundError:
        if re.match(r"^[\w.-]+/[\w.-]+$", model):
            return None, model
        raise
    if resolved.source == "hub-cache":
        return None, model
    return str(resolved.path), None


def node_inputs(train_file: str | None, val_file: str | None, model: str, inputs: Path,
                remote: str = REMOTE) -> tuple[dict[str, str], dict[str, str], str | None]:
    """What every node gets: (file mounts, node path -> local path; the config's fields as
    the nodes see them; a hub model id the nodes download, or None)."""
    paths = remote_paths(remote)
    mounts = {paths["inputs"]: str(inputs)}
    update = {"output_dir": paths["run"]}
    for field, local, prefix in (("train_file", train_file, "train"),
                                 ("val_file", val_file, "val")):
        if local:
            node_path = f"{paths['data']}/{prefix}-{Path(local).name}"
            mounts[node_path] = str(Path(local).resolve())
            update[field] = node_path
    folder, hub_model = model_on_nodes(model)
    if folder:
        mounts[paths["model"]] = folder
        update["model"] = paths["model"]
    return mounts, update, hub_model


def accelerate_config(cfg, job: SkyJob, strategy: str = "auto") -> dict:
    """The accelerate config for the nodes' GPUs: bf16 by the GPU table (not by this
    machine, which may have no GPU), FSDP wrapped per decoder block when the model's config
    is here to name it."""
    from ftagent.tools.gpus import spec_for_device
    from ftagent.tools.train.launch import (
        default_strategy,
        distributed_config,
        model_architecture,
    )

    chosen = default_strategy(cfg.method) if strategy == "auto" else strategy
    gpu = spec_for_device(job.gpus.split(":")[0])
    bf16 = cfg.bf16 is True or (cfg.bf16 == "auto" and (gpu is None or gpu.bf16))
    arch = None
    if chosen == "fsdp":
        try:
            arch = model_architecture(cfg.model, cfg.trust_remote_code)
        except OSError:  # a hub model not downloaded here: accelerate reads the model's own
            arch = None
    return distributed_config(chosen, job.per_node * job.nodes, "bf16" if bf16 else "no",
                              arch, num_machines=job.nodes)


def write_task(cfg, config_path: str | Path, job: SkyJob, out: str | Path | None = None,
               strategy: str = "auto", remote: str = REMOTE, python: str = PYTHON) -> Path:
    """Write the task for `cfg` (a TrainConfig loaded from `config_path`) to `out` (default
    `<output_dir>/skypilot.yaml`), with the node's config and, for several GPUs in all, the
    accelerate config in `skypilot-inputs/` beside it. `remote`: the nodes' folder for the
    run and its inputs; `python`: the nodes' Python with ftagent (a shell word)."""
    from importlib.metadata import version

    from ftagent.tools.atomic import write_text
    from ftagent.tools.config.train_config import save_config
    from ftagent.tools.train.launch import CONFIG_FILE, write_accelerate_config

    target = Path(out).resolve() if out else Path(cfg.output_dir).resolve() / TASK_FILE
    inputs = target.parent / INPUTS
    inputs.mkdir(parents=True, exist_ok=True)
    mounts, update, hub_model = node_inputs(cfg.train_file, cfg.val_file, cfg.model, inputs,
                                            remote)
    accel = bool(job.gpus_per_node) and job.per_node * job.nodes > 1
    if accel:
        write_accelerate_config(accelerate_config(cfg, job, strategy), inputs / CONFIG_FILE)
    save_config(cfg.model_copy(update=update), inputs / "config.yaml",
                header=f"{config_path} as the SkyPilot nodes see it (written by ftagent)")
    text = task_yaml(job, mounts, source_folder(), version("ftagent"), hub_model, remote,
                     python, accel, str(config_path))
    return write_text(target, text)


def launch_command(task_file: str | Path, name: str, sky: str = "sky",
                   secrets: tuple[str, ...] = ()) -> list[str]:
    """`sky launch`: provisions the cluster (SkyPilot shows the cost and asks first), runs
    setup, then the run section on every node, and streams the logs."""
    cmd = [sky, "launch", "-c", name, str(task_file)]
    for key in secrets:
        cmd += ["--secret", key]
    return cmd
