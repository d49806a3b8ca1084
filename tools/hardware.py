"""What this machine can hold: CPU cores, RAM, free disk, GPUs."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from pydantic import BaseModel


class GPU(BaseModel):
    name: str
    memory_gb: float
    compute_capability: str
    bf16: bool


class Hardware(BaseModel):
    cpu_cores: int
    ram_gb: float
    ram_available_gb: float
    disk_free_gb: float
    gpus: list[GPU] = []
    cpu_bf16: bool = False  # the CPU has native bfloat16 instructions (AVX512-BF16 / AMX)
    nodes: int = 1  # machines; `gpus` lists all of theirs, cores and memory are one node's
    described: bool = False  # from `--hardware` (tools.gpus), not probed on this machine

    @property
    def accelerator(self) -> str:
        return self.gpus[0].name if self.gpus else "cpu"

    @property
    def memory_budget_gb(self) -> float:
        """Memory a training run may use: the first GPU's, else most of available RAM."""
        return self.gpus[0].memory_gb if self.gpus else round(self.ram_available_gb * 0.8, 1)


def _cpu_has_bf16() -> bool:
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def probe(path: str | Path = ".") -> Hardware:
    import psutil

    vm = psutil.virtual_memory()
    gpus = []
    try:
        import torch

        for i in range(torch.cuda.device_count()):
            p = torch.cuda.get_device_properties(i)
            gpus.append(
                GPU(
                    name=p.name,
                    memory_gb=round(p.total_memory / 2**30, 1),
                    compute_capability=f"{p.major}.{p.minor}",
                    bf16=p.major >= 8,
                )
            )
    except ImportError:
        pass
    return Hardware(
        cpu_cores=len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count() or 1,
        ram_gb=round(vm.total / 2**30, 1),
        ram_available_gb=round(vm.available / 2**30, 1),
        disk_free_gb=round(shutil.disk_usage(Path(path).resolve()).free / 2**30, 1),
        gpus=gpus,
        cpu_bf16=_cpu_has_bf16(),
    )
