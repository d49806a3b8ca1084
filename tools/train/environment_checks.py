"""Pre-flight checks of the software and the accelerator: installed library versions,
CUDA (a driver without a usable GPU is the common trap), bf16 support, and a tiny 4-bit
round trip for QLoRA. Each `check_*` is pure; the `_probe_*` functions do the I/O."""

from __future__ import annotations

import logging
import re
import time
from importlib import metadata
from pathlib import Path

from ftagent.tools.config.train_config import QuantSettings
from ftagent.tools.hardware import GPU
from ftagent.tools.train.check_result import Check, failed, passed
from packaging.version import InvalidVersion, Version

# package: (minimum, as in pyproject.toml; tested-with, used when constraints.txt is absent)
SUPPORTED: dict[str, tuple[str, str]] = {
    "torch": ("2.4", "2.13.0"),
    "transformers": ("5.0", "5.23.0"),
    "peft": ("0.17", "0.21.2"),
    "trl": ("1.0", "1.16.0"),
    "accelerate": ("1.10", "1.15.0"),
    "datasets": ("4.0", "5.2.0"),
    "bitsandbytes": ("0.45", "0.50.2"),
}
CONSTRAINTS = Path(__file__).resolve().parents[2] / "constraints.txt"  # in a checkout
QLORA_MAX_ERROR = 0.2  # relative round-trip error; nf4 gives ~0.09, fp4 ~0.13 on N(0, 1)


def _major(v: Version) -> tuple[int, ...]:
    """Major series; for 0.x the minor is the breaking number (semver)."""
    return (0, v.minor) if v.major == 0 else (v.major,)


def check_version(
    package: str, installed: str | None, minimum: str, tested: str, constraints: bool = True
) -> Check:
    name = f"{package} version"
    pin = "-c constraints.txt " if constraints else ""
    upgrade = f"pip install {pin}'{package}>={minimum}'"
    if installed is None:
        return failed(
            name, "error", f"{package} is not installed (needs >= {minimum}, tested {tested})",
            upgrade,
        )
    try:
        have = Version(installed)
    except InvalidVersion:
        return failed(
            name, "warning", f"{package} {installed}: unreadable version", f"pip install "
            f"'{package}=={tested}'"
        )
    if have < Version(minimum):
        return failed(
            name, "error", f"{package} {installed} is older than the minimum {minimum}", upgrade
        )
    if _major(have) > _major(Version(tested)):
        return failed(
            name, "warning",
            f"{package} {installed} is a newer major version than tested ({tested}); "
            "its API may have changed",
            f"pip install '{package}=={tested}'",
        )
    return passed(name, f"{package} {installed} (minimum {minimum}, tested {tested})")


def read_tested_versions(constraints: Path = CONSTRAINTS) -> dict[str, str]:
    """Tested-with versions: constraints.txt where it exists, else the SUPPORTED table."""
    tested = {pkg: pair[1] for pkg, pair in SUPPORTED.items()}
    if constraints.is_file():
        for line in constraints.read_text(encoding="utf-8").splitlines():
            m = re.match(r"\s*([A-Za-z0-9_.\-]+)\s*==\s*([^\s;#]+)", line)
            if m and (key := m[1].lower().replace("_", "-")) in tested:
                tested[key] = m[2]
    return tested


def _installed(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def version_checks() -> list[Check]:
    tested = read_tested_versions()
    return [
        check_version(pkg, _installed(pkg), minimum, tested[pkg], CONSTRAINTS.is_file())
        for pkg, (minimum, _) in SUPPORTED.items()
    ]


def check_cuda(gpu: GPU | None, torch_cuda: str | None, driver: str | None) -> Check:
    """What torch will train on; a driver without a usable GPU is the common trap."""
    if gpu:
        return passed(
            "cuda", f"{gpu.name}, compute capability {gpu.compute_capability}, "
            f"{gpu.memory_gb} GB; torch CUDA {torch_cuda}, driver {driver or 'unknown'}",
        )
    if driver and not torch_cuda:
        return failed(
            "cuda", "warning", f"an NVIDIA driver ({driver}) is installed but torch is a CPU "
            "build: training would run on the CPU",
            "install a CUDA build of torch (https://pytorch.org/get-started/locally/)",
        )
    if driver:
        return failed(
            "cuda", "warning", f"torch is built for CUDA {torch_cuda} but sees no GPU "
            f"(driver {driver}): training would run on the CPU",
            f"update the NVIDIA driver to one that supports CUDA {torch_cuda}, or install a "
            "torch build for the CUDA version `nvidia-smi` shows",
        )
    return passed("cuda", "no GPU: training runs on the CPU")


def check_bf16(setting, gpu: GPU | None, cpu_bf16: bool, compute_dtype: str = "auto") -> Check:
    """bf16 forced on hardware without it: an error on GPUs (kernels refuse), slow on CPUs."""
    forced = setting is True or compute_dtype == "bfloat16"
    what = "bf16: true" if setting is True else "quantization.compute_dtype: bfloat16"
    if gpu and forced and not gpu.bf16:
        return failed(
            "bf16", "error", f"{what}, but {gpu.name} (compute capability "
            f"{gpu.compute_capability}) has no bfloat16; it needs 8.0 or newer (Ampere)",
            "set bf16: false (or auto) and quantization.compute_dtype: auto in the config",
        )
    if not gpu and forced and not cpu_bf16:
        return failed(
            "bf16", "warning", f"{what}, but this CPU has no AVX512-BF16/AMX: bfloat16 is "
            "emulated and training may be several times slower",
            "set bf16: auto (or false) to train in float32",
        )
    native = gpu.bf16 if gpu else cpu_bf16
    used = bool(setting) if setting != "auto" else native
    return passed("bf16", f"bf16: {setting} -> training in {'bfloat16' if used else 'float32'}")


def probe_cuda() -> tuple[str | None, str | None]:
    """torch's CUDA version and the NVIDIA driver's, without touching a GPU."""
    driver = None
    try:
        text = Path("/proc/driver/nvidia/version").read_text()
        m = re.search(r"Kernel Module\s+([\d.]+)", text)
        driver = m[1] if m else "present"
    except OSError:
        pass
    if driver is None:
        return None, None  # no driver: torch's CUDA build does not matter, skip the import
    import torch

    try:
        v = torch._C._cuda_getDriverVersion()  # e.g. 12040: the newest CUDA it supports
        driver += f" (CUDA {v // 1000}.{v % 1000 // 10})"
    except (AttributeError, RuntimeError):
        pass
    return torch.version.cuda, driver


def check_qlora(device: str, error: float | None, seconds: float, failure: str = "") -> Check:
    fix = (
        "install a bitsandbytes build for this platform (pip install -c constraints.txt "
        "'bitsandbytes>=0.45'; https://huggingface.co/docs/bitsandbytes/installation), "
        "or set method: lora"
    )
    if failure:
        return failed("qlora backend", "error", f"4-bit quantisation on {device} failed: "
                     f"{failure}", fix)
    if error is None or not error < QLORA_MAX_ERROR:
        return failed(
            "qlora backend", "error", f"4-bit round trip on {device} is wrong: relative "
            f"error {error} (expected < {QLORA_MAX_ERROR})", fix,
        )
    return passed(
        "qlora backend", f"bitsandbytes 4-bit round trip on {device}: relative error "
        f"{error:.3f}, {seconds:.2f} s",
    )


def _probe_qlora(device: str, quant: QuantSettings) -> tuple[float, float]:
    """Quantise and dequantise a small tensor as QLoRA loading will: (rel. error, seconds)."""
    import torch
    from bitsandbytes.functional import dequantize_4bit, quantize_4bit

    started = time.perf_counter()
    x = torch.randn(64, 64, generator=torch.Generator().manual_seed(0)).to(device)
    packed, state = quantize_4bit(
        x, quant_type=quant.quant_type, compress_statistics=quant.double_quant
    )
    y = dequantize_4bit(packed, state).float()
    error = ((y - x).norm() / x.norm()).item()
    return error, time.perf_counter() - started


def qlora_check(device: str, quant: QuantSettings) -> Check:
    # bitsandbytes logs that an optional Hub kernel is missing; its built-in one is correct
    logging.getLogger("bitsandbytes.backends.cpu.ops").setLevel(logging.ERROR)
    try:
        error, seconds = _probe_qlora(device, quant)
    except Exception as exc:  # any failure here is what the user needs to read
        return check_qlora(device, None, 0.0, f"{type(exc).__name__}: {exc}")
    return check_qlora(device, error, seconds)
