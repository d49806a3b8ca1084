"""The machine and software the numbers were measured on, and which optional kernels
ftagent would pick up there (each changes the speed or memory of a run)."""

from __future__ import annotations

import importlib
import importlib.metadata
import os
import platform
import subprocess

PACKAGES = ("torch", "transformers", "peft", "trl", "accelerate", "datasets",
            "bitsandbytes", "fastapi", "uvicorn", "pydantic", "openai")
OPTIONAL_KERNELS = ("flash_attn", "liger_kernel", "bitsandbytes")


def versions() -> dict:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            out[name] = None
    return out


def importable(module: str) -> str:
    """'yes', or why not: installed is not enough (a kernel built for another CUDA
    fails at import)."""
    try:
        importlib.import_module(module)
        return "yes"
    except Exception as exc:  # ImportError, or a broken build's own error
        return f"no ({type(exc).__name__}: {str(exc)[:160]})"


def gpu_facts() -> dict:
    import torch

    if not torch.cuda.is_available():
        return {"cuda_available": False}
    p = torch.cuda.get_device_properties(0)
    facts = {"cuda_available": True, "name": p.name, "memory_gib": round(p.total_memory / 2**30, 1),
             "multiprocessors": p.multi_processor_count, "capability": f"{p.major}.{p.minor}",
             "bf16": torch.cuda.is_bf16_supported(), "cuda": torch.version.cuda,
             "cudnn": torch.backends.cudnn.version()}
    try:
        smi = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                             capture_output=True, text=True, timeout=20)
        facts["driver"] = smi.stdout.strip() or None
    except (OSError, subprocess.TimeoutExpired):
        facts["driver"] = None
    return facts


def run(ctx) -> dict:
    from ftagent.tools.config.train_config import TrainConfig
    from ftagent.tools.train.model import attention_for, use_bf16

    gpu = gpu_facts()
    kernels = {m: importable(m) for m in OPTIONAL_KERNELS}
    probe = TrainConfig(model="-", train_file="-", output_dir="-")
    picks = {"bf16": use_bf16("auto"), "attention (defaults)": attention_for(probe),
             "attention (shared_prefix off)": attention_for(
                 probe.model_copy(update={"shared_prefix": False}))}
    summary = [f"- device: {ctx.device}; GPU: {gpu.get('name', 'none')}"
               + (f", {gpu['memory_gib']} GiB, CUDA {gpu['cuda']}, driver {gpu['driver']}"
                  if gpu["cuda_available"] else ""),
               "- versions: " + ", ".join(f"{k} {v}" for k, v in versions().items()),
               "- optional kernels importable: " + ", ".join(f"{k}: {v}" for k, v in
                                                            kernels.items()),
               "- ftagent picks here: " + ", ".join(f"{k}: {v}" for k, v in picks.items())]
    return {"python": platform.python_version(), "cpu_count": os.cpu_count(), "gpu": gpu,
            "versions": versions(), "optional_kernels": kernels, "ftagent_picks": picks,
            "summary": summary}
