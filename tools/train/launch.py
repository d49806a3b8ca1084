"""Training in several processes through `accelerate launch`: the command line (on one
machine or several), and the accelerate config file for DDP, FSDP2 or DeepSpeed ZeRO-3 on
several GPUs.

The builders are pure, so they are tested without launching anything; the functions after
them (`prepare_config`, `write_accelerate_config`, ...) touch the machine. The recipe
(`python -m ftagent.tools.train`) runs unchanged in every process; only rank 0 writes metrics,
checkpoint markers and results.
"""

from __future__ import annotations

import os
import re
import sys
from pathlib import Path

STRATEGIES = ("ddp", "fsdp", "deepspeed")
CONFIG_FILE = "accelerate_config.yaml"
_PRECISION = {"bf16": "bf16", "fp16": "fp16", "fp32": "no", "no": "no"}
# Decoder blocks whose class is not named `<Model>DecoderLayer` (transformers'
# `_no_split_modules` of these architectures).
_BLOCKS = {"GPT2LMHeadModel": "GPT2Block", "GPTNeoXForCausalLM": "GPTNeoXLayer",
           "GPTJForCausalLM": "GPTJBlock", "BloomForCausalLM": "BloomBlock"}


def launch_command(
    config_path: str | Path,
    num_processes: int,
    backend: str = "auto",
    mixed_precision: str | None = None,
    extra_config_file: str | Path | None = None,
    cpu_threads: int | None = None,
    num_machines: int = 1,
    machine_rank: int = 0,
    main_address: str | None = None,
) -> list[str]:
    """`python -m accelerate.commands.launch ... -m tools.train CONFIG` in N processes on
    this machine, which is one of `num_machines`.

    backend: "cuda", "cpu" or "auto" (CUDA when torch sees a GPU). On CPU, accelerate's
    `--cpu` starts a single process (several need MPI); `--multi_gpu` is what starts N
    processes through torchrun, and without CUDA the Trainer joins them over gloo.
    One machine: `--main_process_port 0` takes a free port, so two runs on one machine do
    not collide. Several: every machine runs this command with its own `machine_rank`, and
    torchrun's static rendezvous meets at `main_address` (HOST:PORT of machine 0, which
    listens there): ranks, world size and the data order are torchrun's and the Trainer's,
    as on one machine. `num_processes` counts this machine's processes; accelerate's
    `--num_processes` is the total over all machines, written here as their product.
    mixed_precision defaults to "no" (or to the config file's): the recipe's `bf16` setting
    turns it on itself, and a launcher default must not override the config.
    """
    if num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, got {num_processes}")
    host, port = check_machines(num_machines, machine_rank, main_address)
    if backend == "auto":
        backend = "cuda" if cuda_devices() else "cpu"
    if backend not in ("cuda", "cpu"):
        raise ValueError(f"backend must be auto, cuda or cpu, got '{backend}'")
    total = num_processes * num_machines
    cmd = [sys.executable, "-m", "accelerate.commands.launch"]
    if extra_config_file:  # the file says DDP, FSDP or DeepSpeed; flags only add to it
        cmd += ["--config_file", str(extra_config_file)]
    elif total > 1:
        cmd += ["--multi_gpu"]
    elif backend == "cpu":
        cmd += ["--cpu"]
    cmd += ["--num_processes", str(total), "--num_machines", str(num_machines)]
    if num_machines > 1:
        cmd += ["--machine_rank", str(machine_rank), "--main_process_ip", host]
    if mixed_precision or not extra_config_file:
        cmd += ["--mixed_precision", mixed_precision or "no"]
    if backend == "cpu":  # share the cores out instead of oversubscribing them
        cmd += ["--num_cpu_threads_per_process", str(cpu_threads or _cpu_share(num_processes))]
    cmd += ["--dynamo_backend", "no", "--main_process_port", str(port),
            "-m", "ftagent.tools.train", str(config_path)]
    return cmd


def _cpu_share(num_processes: int) -> int:
    """Threads per process: a count set in the environment (OMP_NUM_THREADS) wins, as when
    several "machines" share one host; otherwise this machine's cores split evenly."""
    env = os.environ.get("OMP_NUM_THREADS", "")
    if env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (os.cpu_count() or 1) // num_processes)


def parse_address(address: str) -> tuple[str, int]:
    """HOST:PORT (an IPv6 host in brackets, `[fe80::1]:29500`) -> (host, port)."""
    host, sep, port = address.strip().rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"main address must be HOST:PORT with a port from 1 to 65535, "
                         f"got '{address}'")
    return host, int(port)


def check_machines(num_machines: int, machine_rank: int,
                   main_address: str | None) -> tuple[str | None, int]:
    """Validate a machine layout; return the rendezvous (host, port). One machine needs no
    address (port 0: a free one); several need machine 0's HOST:PORT, with a real port,
    since the other machines cannot learn a port machine 0 picked for itself."""
    if num_machines < 1:
        raise ValueError(f"the number of machines must be at least 1, got {num_machines}")
    if not 0 <= machine_rank < num_machines:
        raise ValueError(f"machine rank must be from 0 to {num_machines - 1} for "
                         f"{num_machines} machine(s), got {machine_rank}")
    if main_address is None:
        if num_machines > 1:
            raise ValueError(f"{num_machines} machines need the main address: HOST:PORT of "
                             "machine 0, where the others meet it")
        return None, 0
    return parse_address(main_address)


def default_strategy(method: str) -> str:
    """Full training shards weights and optimizer state (FSDP); adapters are small enough
    to keep a whole copy per GPU (DDP). The same rule the planner's fit uses."""
    return "fsdp" if method == "full" else "ddp"


def layer_class(architecture: str | None) -> str | None:
    """The decoder block FSDP wraps one by one, from the config's architecture name
    (LlamaForCausalLM -> LlamaDecoderLayer); None lets accelerate use the model's own
    `_no_split_modules`."""
    if not architecture:
        return None
    if architecture in _BLOCKS:
        return _BLOCKS[architecture]
    name, n = re.subn(r"For(CausalLM|ConditionalGeneration)$", "DecoderLayer", architecture)
    return name if n else None


def distributed_config(
    strategy: str,
    num_processes: int,
    precision: str = "bf16",
    architecture: str | None = None,
    offload: bool = False,
    num_machines: int = 1,
) -> dict:
    """The accelerate config (as `accelerate config` would write it) for `num_processes`
    GPUs in all, on `num_machines` machines. One file serves every machine: each one's rank
    and the rendezvous come from `launch_command`'s flags, which win over the file.

    fsdp: FSDP2, fully sharded (parameters resharded after forward), wrapped per decoder
    block; a full state dict, so the saved adapter or model is a plain checkpoint that
    merge and evaluation load. Activation checkpointing stays with the recipe's
    `gradient_checkpointing` (transformers refuses both at once).
    deepspeed: ZeRO-3; launching it needs `pip install deepspeed`, which ftagent does not
    install. offload: parameters and optimizer state in CPU memory (FSDP, DeepSpeed).
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"strategy must be one of {', '.join(STRATEGIES)}, got '{strategy}'")
    if num_processes < 1:
        raise ValueError(f"num_processes must be at least 1, got {num_processes}")
    if num_machines < 1 or num_processes % num_machines:
        raise ValueError(f"{num_processes} processes do not split evenly over "
                         f"{num_machines} machine(s)")
    if precision not in _PRECISION:
        raise ValueError(f"precision must be one of {', '.join(_PRECISION)}, got '{precision}'")
    cfg: dict = {
        "compute_environment": "LOCAL_MACHINE",
        "distributed_type": {"ddp": "MULTI_GPU", "fsdp": "FSDP", "deepspeed": "DEEPSPEED"}[
            strategy],
        "num_machines": num_machines,
        "machine_rank": 0,
        "num_processes": num_processes,
        "gpu_ids": "all",
        "mixed_precision": _PRECISION[precision],
        "rdzv_backend": "static",
        "same_network": True,
        "main_training_function": "main",
        "use_cpu": False,
    }
    if strategy == "fsdp":
        fsdp = {
            "fsdp_version": 2,
            "fsdp_reshard_after_forward": True,  # FSDP2's FULL_SHARD
            "fsdp_auto_wrap_policy": "TRANSFORMER_BASED_WRAP",
            "fsdp_state_dict_type": "FULL_STATE_DICT",
            "fsdp_offload_params": offload,
            # Rank 0 reads the weights, the others start empty and receive them.
            "fsdp_cpu_ram_efficient_loading": True,
            "fsdp_sync_module_states": True,
            "fsdp_activation_checkpointing": False,
        }
        block = layer_class(architecture)
        if block:
            fsdp["fsdp_transformer_layer_cls_to_wrap"] = block
        cfg["fsdp_config"] = fsdp
    elif strategy == "deepspeed":
        where = "cpu" if offload else "none"
        # Accumulation and clipping are left out: DeepSpeed then takes the Trainer's.
        cfg["deepspeed_config"] = {
            "zero_stage": 3,
            "zero3_init_flag": True,
            "zero3_save_16bit_model": True,
            "offload_optimizer_device": where,
            "offload_param_device": where,
            "deepspeed_multinode_launcher": "standard",
        }
    return cfg


def from_plan(plan: dict, architecture: str | None = None) -> dict | None:
    """The accelerate config a plan's hardware fit asks for; None for a single device."""
    if plan.get("strategy", "single") == "single" or plan.get("n_devices", 1) < 2:
        return None
    return distributed_config(plan["strategy"], plan["n_devices"],
                              plan.get("precision", "bf16"), architecture)


# ---- I/O ----------------------------------------------------------------------------


def write_accelerate_config(cfg: dict, path: str | Path) -> Path:
    import yaml
    from ftagent.tools.atomic import write_text

    header = "# accelerate config written by ftagent; use with `accelerate launch --config_file`\n"
    return write_text(path, header + yaml.safe_dump(cfg, sort_keys=False))


def prepare_config(cfg, num_processes: int, strategy: str = "auto",
                   num_machines: int = 1) -> Path:
    """Write the accelerate config for training `cfg` (a TrainConfig) on `num_processes`
    GPUs in all (over `num_machines`) into its output folder; strategy "auto" follows
    `default_strategy`. Every machine writes the same file, atomically: on a shared output
    folder they do not step on each other."""
    from ftagent.tools.train.model import use_bf16

    chosen = default_strategy(cfg.method) if strategy == "auto" else strategy
    arch = model_architecture(cfg.model, cfg.trust_remote_code) if chosen == "fsdp" else None
    precision = "bf16" if use_bf16(cfg.bf16) else "no"
    accel = distributed_config(chosen, num_processes, precision, arch,
                               num_machines=num_machines)
    return write_accelerate_config(accel, Path(cfg.output_dir).resolve() / CONFIG_FILE)


def model_architecture(model: str, trust_remote_code: bool = False) -> str | None:
    """The first `architectures` entry of the model's config (reads config.json only)."""
    from transformers import AutoConfig

    archs = AutoConfig.from_pretrained(model, trust_remote_code=trust_remote_code).architectures
    return archs[0] if archs else None


def cuda_devices() -> int:
    import torch

    return torch.cuda.device_count() if torch.cuda.is_available() else 0


def deepspeed_installed() -> bool:
    import importlib.util

    return importlib.util.find_spec("deepspeed") is not None
