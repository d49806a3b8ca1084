"""Common GPUs: memory, speed and price, for planning on hardware you do not have at hand
(`ftagent plan --hardware H100-80GB:8 --nodes 2`) and for pricing and timing the GPUs a
machine has.

Where the numbers come from:
- memory and peak dense bf16 tensor TFLOP/s (fp16 on T4 and V100, which have no bf16; no
  sparsity): NVIDIA's data sheets (H100 SXM5 and PCIe, H200, B200 in an HGX board, A100,
  L40S, L40, L4, A10, T4, V100, and the GeForce RTX 4090/3090 with fp32 accumulation).
  AWS's A10G has no NVIDIA sheet; it is taken as the A10.
- sustained training speed: 40% of that peak (the model FLOPs utilisation a well-fed
  transformer fine-tune reaches; the estimator's CPU rates are measured instead). Across
  GPUs, communication takes 10% on one node and 20% across nodes (`fit.device_rate`).
- price: a typical on-demand price of one GPU-hour in USD at GPU clouds (Lambda, RunPod
  and the like, 2025-2026); the big clouds' on-demand prices run up to twice these, spot
  and reserved prices below. `--rate` sets your own.
- a node described by `--hardware` (not probed): 12 CPU cores and twice the GPUs' memory
  in RAM per GPU, 1 TB of free disk, as typical cloud GPU machines have.
"""

from __future__ import annotations

from dataclasses import dataclass

from ftagent.tools.hardware import GPU, Hardware

MFU = 0.4
UNKNOWN_TFLOPS = 125.0  # a GPU not in the table: sustained 50 TFLOP/s, as before
UNKNOWN_PRICE = 1.0


@dataclass(frozen=True)
class GPUSpec:
    key: str  # the name `--hardware` takes
    matches: tuple[str, ...]  # substrings of torch's device name, checked in table order
    memory_gb: float
    tflops: float  # peak dense bf16 (fp16 without bf16)
    usd_per_hour: float
    compute_capability: str
    sky: str  # SkyPilot's accelerator name

    @property
    def bf16(self) -> bool:
        return float(self.compute_capability) >= 8.0

    @property
    def sustained_flops(self) -> float:
        return self.tflops * 1e12 * MFU


# More specific names first: "H100 PCIe" before "H100", "A100 40GB" before "A100".
SPECS: tuple[GPUSpec, ...] = (
    GPUSpec("B200", ("B200",), 180, 2250, 6.0, "10.0", "B200"),
    GPUSpec("H200", ("H200",), 141, 989, 3.5, "9.0", "H200"),
    GPUSpec("H100-PCIe", ("H100 PCIe", "H100-PCIE"), 80, 756, 2.0, "9.0", "H100"),
    GPUSpec("H100-80GB", ("H100",), 80, 989, 2.5, "9.0", "H100"),
    GPUSpec("A100-40GB", ("A100-SXM4-40GB", "A100-PCIE-40GB", "A100 40GB"), 40, 312, 1.3,
            "8.0", "A100"),
    GPUSpec("A100-80GB", ("A100",), 80, 312, 1.5, "8.0", "A100-80GB"),
    GPUSpec("L40S", ("L40S",), 48, 362, 1.0, "8.9", "L40S"),
    GPUSpec("L40", ("L40",), 48, 181, 0.9, "8.9", "L40"),
    GPUSpec("L4", ("L4",), 24, 121, 0.7, "8.9", "L4"),
    GPUSpec("A10G", ("A10G",), 24, 125, 1.0, "8.6", "A10G"),
    GPUSpec("A10", ("A10",), 24, 125, 0.75, "8.6", "A10"),
    GPUSpec("T4", ("T4",), 16, 65, 0.35, "7.5", "T4"),
    GPUSpec("V100", ("V100",), 32, 125, 0.5, "7.0", "V100-32GB"),
    GPUSpec("RTX4090", ("4090",), 24, 165, 0.4, "8.9", "RTX4090"),
    GPUSpec("RTX3090", ("3090",), 24, 71, 0.25, "8.6", "RTX3090"),
)
ALIASES = {"H100": "H100-80GB", "A100": "A100-80GB", "4090": "RTX4090", "3090": "RTX3090"}


def spec_for_device(name: str) -> GPUSpec | None:
    """The table's row for a device as torch names it ("NVIDIA H100 80GB HBM3")."""
    return next((s for s in SPECS if any(m in name for m in s.matches)), None)


def spec(key: str) -> GPUSpec:
    """The row for a `--hardware` name (case-insensitive; H100 means H100-80GB)."""
    wanted = ALIASES.get(key.upper(), key).lower()
    for s in SPECS:
        if s.key.lower() == wanted:
            return s
    raise ValueError(f"unknown GPU '{key}'; known: {', '.join(s.key for s in SPECS)}")


def sustained_flops(device_name: str) -> float:
    s = spec_for_device(device_name)
    return s.sustained_flops if s else UNKNOWN_TFLOPS * 1e12 * MFU


def price(device_name: str) -> float:
    s = spec_for_device(device_name)
    return s.usd_per_hour if s else UNKNOWN_PRICE


def described(hardware: str, nodes: int = 1) -> Hardware:
    """Hardware for `GPU[:COUNT]` per node on `nodes` nodes, from the table."""
    name, _, count = hardware.partition(":")
    if count and not count.isdigit() or count == "0":
        raise ValueError(f"hardware must be GPU or GPU:COUNT (H100-80GB:8), got '{hardware}'")
    if nodes < 1:
        raise ValueError(f"nodes must be at least 1, got {nodes}")
    s = spec(name)
    per_node = int(count or 1)
    gpu = GPU(name=s.key, memory_gb=s.memory_gb, compute_capability=s.compute_capability,
              bf16=s.bf16)
    ram = 2 * s.memory_gb * per_node
    return Hardware(cpu_cores=12 * per_node, ram_gb=ram, ram_available_gb=ram,
                    disk_free_gb=1000, gpus=[gpu] * (per_node * nodes), nodes=nodes,
                    described=True)
