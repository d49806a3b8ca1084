"""Pre-flight checks of capacity: will the run fit in GPU memory or RAM (with each lever
that would make it fit), and will its checkpoints and merged export fit on disk."""

from __future__ import annotations

import math
import shutil
from pathlib import Path

from ftagent.tools.config.train_config import TrainConfig
from ftagent.tools.data.facts import TokenFacts
from ftagent.tools.hardware import Hardware
from ftagent.tools.plan.estimate import (
    GB,
    Estimate,
    Shape,
    estimate_for,
    lora_params,
    settings_of,
    train_precision,
)
from ftagent.tools.plan.fit import usable_gb
from ftagent.tools.train.check_result import Check, failed, passed

GPU_HEADROOM = 0.9  # the CUDA allocator fragments; leave a tenth free
RAM_HEADROOM = 0.8  # the OS and other processes keep needing some of what is free now
CHECKPOINTS = 3  # train.py keeps 2 (save_total_limit) and writes a third before pruning


def estimate_run(shape: Shape, cfg: TrainConfig, tokens: TokenFacts, precision: str,
                 device: str, **change) -> Estimate:
    """The planner's estimate (`estimate_for`) with the config's settings, optionally
    changed (batch=2, ...), over the training rows' token facts."""
    return estimate_for(shape, settings_of(cfg, precision, **change), tokens, device)


def memory_fixes(
    shape: Shape, cfg: TrainConfig, tokens: TokenFacts, precision: str, device: str,
    budget_gb: float,
) -> str:
    """Each lever with the estimate it gives, so the user can pick one that fits."""

    def gb(**change) -> float:
        return estimate_run(shape, cfg, tokens, precision, device, **change).total_gb

    fixes = []
    if cfg.batch_size > 1:
        fits = [b for b in range(cfg.batch_size - 1, 0, -1) if gb(batch=b) <= budget_gb]
        b = fits[0] if fits else 1
        accum = math.ceil(cfg.batch_size * cfg.grad_accum / b)
        fixes.append(f"batch_size: {b} with grad_accum: {accum} (same effective batch; "
                     f"{gb(batch=b):.2f} GB)")
    if not cfg.gradient_checkpointing:
        fixes.append(f"gradient_checkpointing: true ({gb(gradient_checkpointing=True):.2f} GB)")
    if cfg.method != "qlora":
        fixes.append(f"method: qlora ({gb(method='qlora'):.2f} GB)")
    text = "Lower the estimate: " + "; ".join(fixes) if fixes else "No setting left to lower"
    least = gb(batch=1, gradient_checkpointing=True, method="qlora")
    if least > budget_gb:
        text += (f". Even all of these together need {least:.2f} GB: free memory, shorten "
                 "max_length, or use a machine with more memory")
    return text


def check_memory(est_gb: float, budget_gb: float, where: str, fixes: str) -> Check:
    detail = f"estimated peak {est_gb:.2f} GB, budget {budget_gb:.2f} GB ({where})"
    if est_gb > budget_gb:
        return failed("memory", "error", f"{detail}: training would run out of memory", fixes)
    return passed("memory", detail)


def memory_check(shape: Shape, cfg: TrainConfig, hw: Hardware, tokens: TokenFacts) -> Check:
    """The estimate against the memory there is; `tokens`: the train file's token facts
    (`tools.data.tokens.file_token_facts`), the same the planner measures."""
    gpu = hw.gpus[0] if hw.gpus else None
    precision = train_precision(cfg.bf16, gpu.bf16 if gpu else hw.cpu_bf16)
    device = "cuda" if gpu else "cpu"
    budget = usable_gb(hw)  # the planner's budget, rounded as it rounds it
    if gpu:
        where = f"{GPU_HEADROOM:.0%} of {gpu.name}'s {gpu.memory_gb} GB"
    else:
        where = f"{RAM_HEADROOM:.0%} of {hw.ram_available_gb} GB available RAM"
    est = estimate_run(shape, cfg, tokens, precision, device)
    fixes = (memory_fixes(shape, cfg, tokens, precision, device, budget)
             if est.total_gb > budget else "")
    return check_memory(est.total_gb, budget, f"{where}, {precision}", fixes)


def disk_needed_bytes(model_bytes: int, method: str, trainable_params: int) -> int:
    """Merged export (~2x the model, with its temp copy) + checkpoints: an adapter's is its
    fp32 values and AdamW's two moments; a full model's is the weights and two moments."""
    checkpoint = model_bytes * 3 if method == "full" else trainable_params * 12
    return model_bytes * 2 + CHECKPOINTS * checkpoint


def check_disk(free_bytes: int, needed_bytes: int, where: Path) -> Check:
    detail = f"{free_bytes / GB:.2f} GB free at {where}, about {needed_bytes / GB:.2f} GB needed"
    if free_bytes < needed_bytes:
        return failed(
            "disk", "error", f"{detail}: checkpoints or the merged export would not fit",
            f"free at least {(needed_bytes - free_bytes) / GB:.2f} GB there, or set output_dir "
            "on a disk with more space",
        )
    return passed("disk", detail)


def existing_parent(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_check(cfg: TrainConfig, folder: Path, shape: Shape | None) -> Check:
    model_bytes = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    targets = settings_of(cfg, "fp32").lora_targets
    trainable = lora_params(shape, cfg.lora.r, list(targets)) if shape else 0
    where = existing_parent(Path(cfg.output_dir))
    needed = disk_needed_bytes(model_bytes, cfg.method, trainable)
    return check_disk(shutil.disk_usage(where).free, needed, where)
