"""Will it fit, how long will it take, what will it cost: numbers for the planner.

Memory and time come from `tools.plan.estimate.estimate_for` (formula and measured error
there), the same function the trainer's pre-flight calls, with the same settings and token
facts. A setting fits when its estimate stays under the usable memory: 90% of a GPU
(fragmentation and the allocator's cache take the rest) or 80% of available RAM (already in
the budget).
"""

from __future__ import annotations

import math

from ftagent.tools import gpus
from ftagent.tools.data.facts import TokenFacts, worth_sharing
from ftagent.tools.hardware import Hardware
from ftagent.tools.plan.estimate import (
    DEVICE_FLOPS,
    GB,
    Estimate,
    RunSettings,
    Shape,
    estimate_for,
    micro_batches,
    train_flops,
)
from pydantic import BaseModel

# Tried in order until one fits: smaller micro-batches first (gradient accumulation
# keeps the effective batch), gradient checkpointing only when those are not enough.
SHARED_BATCH = 16
LADDER = [(8, False), (4, False), (2, False), (4, True), (2, True), (1, True)]
# Across GPUs communication takes part of each step: NVLink within a node, the network
# (InfiniBand, EFA) across nodes. Assumed, not measured here (no GPU).
COMM_ONE_NODE = 0.9
COMM_NODES = 0.8


class Fit(BaseModel):
    adapter: str  # lora | qlora | full
    precision: str
    batch_size: int
    gradient_checkpointing: bool
    memory_gb: float  # per device
    usable_gb: float
    parts_gb: dict[str, float]
    strategy: str  # single | ddp | fsdp
    n_devices: int
    fits: bool
    trainable_params: int


class Timing(BaseModel):
    tokens: int  # tokens computed over the whole run (padding included, shared prefixes once)
    flops: float
    device_flops: float
    train_hours: float
    gpu_hours: float
    rate_usd_per_hour: float
    cost_usd: float


def usable_gb(hw: Hardware) -> float:
    return round(hw.gpus[0].memory_gb * 0.9, 1) if hw.gpus else hw.memory_budget_gb


def precision_for(hw: Hardware) -> str:
    if hw.gpus:
        return "bf16" if hw.gpus[0].bf16 else "fp16"
    return "bf16" if hw.cpu_bf16 else "fp32"


def _per_device(e: Estimate, n: int, sharded: bool) -> float:
    """FSDP shards weights and trainable state over n devices; the rest is per device."""
    p = e.parts_gb
    if not sharded or n == 1:
        return e.total_gb
    shared = p["weights"] + p["trainable_state"]
    return round(e.total_gb - shared + shared / n, 2)


def try_fit(
    shape: Shape,
    settings: RunSettings,
    hw: Hardware,
    facts: TokenFacts,
    reference_copy: bool = False,
    max_batch: int | None = None,
) -> Fit:
    """The first rung of the ladder that fits, else the last one (marked not fitting).
    `settings` are the run's other choices (method, precision, max_length, LoRA shape);
    the ladder sets batch and gradient checkpointing. Adapters try data-parallel (a full
    copy per GPU) down the whole ladder before sharding; full training shards (FSDP)
    whenever there are several GPUs.
    `reference_copy`: full-parameter DPO keeps a frozen copy of the model as reference.
    `max_batch`: rows per optimizer step; larger rungs are skipped, so the estimate is
    made for the micro-batch the plan will really use."""
    adapter = settings.method
    device = "cuda" if hw.gpus else "cpu"
    n = max(1, len(hw.gpus))
    limit = usable_gb(hw)
    passes = [True] if adapter == "full" and n > 1 else [False, True] if n > 1 else [False]
    fit = None
    ladder = LADDER
    if (settings.shared_prefix and adapter != "full"
            and worth_sharing((SHARED_BATCH - 1) * facts.shared_prefix,
                              SHARED_BATCH * facts.mean)):
        # Rows that share a prefix pay for it once per micro-batch: 16 rows a micro-batch
        # (no accumulation at the default 16 per step) spread it over twice the rows of 8.
        ladder = [(SHARED_BATCH, False), *LADDER]
    if max_batch:
        ladder = [(b, gc) for b, gc in ladder if b <= max_batch] or LADDER[-1:]
    for sharded in passes:
        for batch, gc in ladder:
            run = settings.model_copy(update={"batch": batch, "gradient_checkpointing": gc})
            e = estimate_for(shape, run, facts, device)
            extra = e.parts_gb["weights"] if reference_copy else 0.0
            mem = round(_per_device(e, n, sharded) + (extra / n if sharded else extra), 2)
            strategy = "single" if n == 1 else ("fsdp" if sharded else "ddp")
            fit = Fit(
                adapter=adapter, precision=precision_for(hw), batch_size=batch,
                gradient_checkpointing=gc, memory_gb=mem, usable_gb=limit,
                parts_gb=e.parts_gb, strategy=strategy, n_devices=n, fits=mem <= limit,
                trainable_params=e.trainable_params,
            )
            if fit.fits:
                return fit
    return fit


def device_rate(hw: Hardware, precision: str) -> float:
    """Sustained training FLOP/s of all devices together."""
    if not hw.gpus:
        per_two_cores = DEVICE_FLOPS[f"cpu-{'bf16' if precision == 'bf16' else 'fp32'}"]
        return per_two_cores * max(1, hw.cpu_cores) / 2
    n = len(hw.gpus)
    share = 1.0 if n == 1 else COMM_NODES if hw.nodes > 1 else COMM_ONE_NODE
    return gpus.sustained_flops(hw.gpus[0].name) * n * share


def gpu_rate(hw: Hardware, given: float | None) -> float:
    if given is not None:
        return given
    if not hw.gpus:
        return 0.0  # your own CPU
    return gpus.price(hw.gpus[0].name)


def timing(
    shape: Shape,
    settings: RunSettings,
    fit: Fit,
    hw: Hardware,
    n_train: int,
    facts: TokenFacts,
    epochs: float,
    rate_usd: float | None = None,
) -> Timing:
    """Every micro-batch of the run at the typical one's FLOPs (`train_flops`: the same
    count as the estimate's seconds per step), over the device rate."""
    run = settings.model_copy(update={"batch": fit.batch_size,
                                      "gradient_checkpointing": fit.gradient_checkpointing})
    _, typical = micro_batches(run, facts)
    steps = math.ceil(n_train / fit.batch_size) * epochs
    tokens = int(steps * typical.tokens)
    flops = steps * train_flops(shape, fit.adapter, typical, fit.gradient_checkpointing,
                                settings.objective)
    rate = device_rate(hw, fit.precision)
    hours = flops / rate / 3600
    gpu_hours = hours * len(hw.gpus)
    price = gpu_rate(hw, rate_usd)
    return Timing(
        tokens=tokens, flops=flops, device_flops=rate, train_hours=round(hours, 3),
        gpu_hours=round(gpu_hours, 3), rate_usd_per_hour=price,
        cost_usd=round((gpu_hours if hw.gpus else hours) * price, 2),
    )


def download_gb(params: int) -> float:
    return round(params * 2 / GB, 1)  # bf16 safetensors
