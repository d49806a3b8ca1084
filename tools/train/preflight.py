"""Pre-flight: find in seconds what would make a training run fail minutes or hours in.

Each `check_*` function is pure (plain values in, a `Check` out) so the rules are unit
tested on any machine; the `_probe_*` functions do the I/O; `preflight()` joins them.
Every failing check says what to change, in the config's own field names.
"""

from __future__ import annotations

import json
import logging
import math
import re
import shutil
import time
from importlib import metadata
from pathlib import Path
from typing import Literal

from ftagent.tools.config.train_config import QuantSettings, TrainConfig
from ftagent.tools.hardware import GPU, Hardware
from ftagent.tools.plan.estimate import (
    GB,
    Estimate,
    Shape,
    estimate,
    lora_params,
    shape_from_config,
)
from packaging.version import InvalidVersion, Version
from pydantic import BaseModel, computed_field

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
GPU_HEADROOM = 0.9  # the CUDA allocator fragments; leave a tenth free
RAM_HEADROOM = 0.8  # the OS and other processes keep needing some of what is free now
CHECKPOINTS = 3  # train.py keeps 2 (save_total_limit) and writes a third before pruning
QLORA_MAX_ERROR = 0.2  # relative round-trip error; nf4 gives ~0.09, fp4 ~0.13 on N(0, 1)
ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
FINISHED_MARKERS = ("result.json", "adapter", "model")  # what train.py writes on success
WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")
TOKENIZER_FILES = ("tokenizer.json", "tokenizer.model", "vocab.json", "spiece.model")

Severity = Literal["error", "warning", "info"]


class Check(BaseModel):
    """One finding. Passing checks have severity "info"; a failing one is an error (the
    run would fail or be wrong) or a warning (it would run, but slowly or untested)."""

    name: str
    ok: bool
    severity: Severity = "info"
    detail: str
    fix: str = ""


class PreflightReport(BaseModel):
    checks: list[Check]

    @computed_field
    @property
    def ok(self) -> bool:
        """True when nothing would stop training; warnings do not."""
        return not self.errors

    @property
    def errors(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and c.severity == "error"]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and c.severity == "warning"]

    def get(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)


def _pass(name: str, detail: str) -> Check:
    return Check(name=name, ok=True, severity="info", detail=detail)


def _fail(name: str, severity: Severity, detail: str, fix: str) -> Check:
    return Check(name=name, ok=False, severity=severity, detail=detail, fix=fix)


# ---- installed versions -------------------------------------------------------------


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
        return _fail(
            name, "error", f"{package} is not installed (needs >= {minimum}, tested {tested})",
            upgrade,
        )
    try:
        have = Version(installed)
    except InvalidVersion:
        return _fail(
            name, "warning", f"{package} {installed}: unreadable version", f"pip install "
            f"'{package}=={tested}'"
        )
    if have < Version(minimum):
        return _fail(
            name, "error", f"{package} {installed} is older than the minimum {minimum}", upgrade
        )
    if _major(have) > _major(Version(tested)):
        return _fail(
            name, "warning",
            f"{package} {installed} is a newer major version than tested ({tested}); "
            "its API may have changed",
            f"pip install '{package}=={tested}'",
        )
    return _pass(name, f"{package} {installed} (minimum {minimum}, tested {tested})")


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


# ---- CUDA and bf16 ------------------------------------------------------------------


def check_cuda(gpu: GPU | None, torch_cuda: str | None, driver: str | None) -> Check:
    """What torch will train on; a driver without a usable GPU is the common trap."""
    if gpu:
        return _pass(
            "cuda", f"{gpu.name}, compute capability {gpu.compute_capability}, "
            f"{gpu.memory_gb} GB; torch CUDA {torch_cuda}, driver {driver or 'unknown'}",
        )
    if driver and not torch_cuda:
        return _fail(
            "cuda", "warning", f"an NVIDIA driver ({driver}) is installed but torch is a CPU "
            "build: training would run on the CPU",
            "install a CUDA build of torch (https://pytorch.org/get-started/locally/)",
        )
    if driver:
        return _fail(
            "cuda", "warning", f"torch is built for CUDA {torch_cuda} but sees no GPU "
            f"(driver {driver}): training would run on the CPU",
            f"update the NVIDIA driver to one that supports CUDA {torch_cuda}, or install a "
            "torch build for the CUDA version `nvidia-smi` shows",
        )
    return _pass("cuda", "no GPU: training runs on the CPU")


def check_bf16(setting, gpu: GPU | None, cpu_bf16: bool, compute_dtype: str = "auto") -> Check:
    """bf16 forced on hardware without it: an error on GPUs (kernels refuse), slow on CPUs."""
    forced = setting is True or compute_dtype == "bfloat16"
    what = "bf16: true" if setting is True else "quantization.compute_dtype: bfloat16"
    if gpu and forced and not gpu.bf16:
        return _fail(
            "bf16", "error", f"{what}, but {gpu.name} (compute capability "
            f"{gpu.compute_capability}) has no bfloat16; it needs 8.0 or newer (Ampere)",
            "set bf16: false (or auto) and quantization.compute_dtype: auto in the config",
        )
    if not gpu and forced and not cpu_bf16:
        return _fail(
            "bf16", "warning", f"{what}, but this CPU has no AVX512-BF16/AMX: bfloat16 is "
            "emulated and training may be several times slower",
            "set bf16: auto (or false) to train in float32",
        )
    native = gpu.bf16 if gpu else cpu_bf16
    used = bool(setting) if setting != "auto" else native
    return _pass("bf16", f"bf16: {setting} -> training in {'bfloat16' if used else 'float32'}")


def _precision(setting, gpu: GPU | None, cpu_bf16: bool) -> str:
    """The dtype train.py will use (`_use_bf16`): bf16 or fp32, never fp16."""
    if setting == "auto":
        return "bf16" if (gpu.bf16 if gpu else cpu_bf16) else "fp32"
    return "bf16" if setting else "fp32"


def _probe_cuda() -> tuple[str | None, str | None]:
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


# ---- QLoRA backend ------------------------------------------------------------------


def check_qlora(device: str, error: float | None, seconds: float, failure: str = "") -> Check:
    fix = (
        "install a bitsandbytes build for this platform (pip install -c constraints.txt "
        "'bitsandbytes>=0.45'; https://huggingface.co/docs/bitsandbytes/installation), "
        "or set method: lora"
    )
    if failure:
        return _fail("qlora backend", "error", f"4-bit quantisation on {device} failed: "
                     f"{failure}", fix)
    if error is None or not error < QLORA_MAX_ERROR:
        return _fail(
            "qlora backend", "error", f"4-bit round trip on {device} is wrong: relative "
            f"error {error} (expected < {QLORA_MAX_ERROR})", fix,
        )
    return _pass(
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


# ---- memory and disk ----------------------------------------------------------------


def _targets(cfg: TrainConfig) -> tuple[str, ...]:
    t = cfg.lora.target_modules
    return ALL_LINEAR if t == "all-linear" else tuple(t)


def estimate_run(shape: Shape, cfg: TrainConfig, precision: str, device: str, **change) -> Estimate:
    """The estimator with the config's settings, optionally changed (batch=2, ...)."""
    args = {
        "method": cfg.method,
        "batch": cfg.batch_size,
        "seq": cfg.max_length,
        "lora_r": cfg.lora.r,
        "lora_targets": _targets(cfg),
        "gradient_checkpointing": cfg.gradient_checkpointing,
    } | change
    return estimate(shape, precision=precision, device=device, **args)


def memory_fixes(
    shape: Shape, cfg: TrainConfig, precision: str, device: str, budget_gb: float
) -> str:
    """Each lever with the estimate it gives, so the user can pick one that fits."""

    def gb(**change) -> float:
        return estimate_run(shape, cfg, precision, device, **change).total_gb

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
        return _fail("memory", "error", f"{detail}: training would run out of memory", fixes)
    return _pass("memory", detail)


def memory_check(shape: Shape, cfg: TrainConfig, hw: Hardware) -> Check:
    gpu = hw.gpus[0] if hw.gpus else None
    precision = _precision(cfg.bf16, gpu, hw.cpu_bf16)
    device = "cuda" if gpu else "cpu"
    if gpu:
        budget, where = gpu.memory_gb * GPU_HEADROOM, f"90% of {gpu.name}'s {gpu.memory_gb} GB"
    else:
        budget = hw.ram_available_gb * RAM_HEADROOM
        where = f"80% of {hw.ram_available_gb} GB available RAM"
    est = estimate_run(shape, cfg, precision, device)
    fixes = memory_fixes(shape, cfg, precision, device, budget) if est.total_gb > budget else ""
    return check_memory(est.total_gb, budget, f"{where}, {precision}", fixes)


def disk_needed_bytes(model_bytes: int, method: str, trainable_params: int) -> int:
    """Merged export (~2x the model, with its temp copy) + checkpoints: an adapter's is its
    fp32 values and AdamW's two moments; a full model's is the weights and two moments."""
    checkpoint = model_bytes * 3 if method == "full" else trainable_params * 12
    return model_bytes * 2 + CHECKPOINTS * checkpoint


def check_disk(free_bytes: int, needed_bytes: int, where: Path) -> Check:
    detail = f"{free_bytes / GB:.2f} GB free at {where}, about {needed_bytes / GB:.2f} GB needed"
    if free_bytes < needed_bytes:
        return _fail(
            "disk", "error", f"{detail}: checkpoints or the merged export would not fit",
            f"free at least {(needed_bytes - free_bytes) / GB:.2f} GB there, or set output_dir "
            "on a disk with more space",
        )
    return _pass("disk", detail)


def existing_parent(path: Path) -> Path:
    path = path.expanduser().absolute()
    while not path.exists() and path != path.parent:
        path = path.parent
    return path


def disk_check(cfg: TrainConfig, folder: Path, shape: Shape | None) -> Check:
    model_bytes = sum(p.stat().st_size for p in folder.glob("*.safetensors"))
    trainable = lora_params(shape, cfg.lora.r, list(_targets(cfg))) if shape else 0
    where = existing_parent(Path(cfg.output_dir))
    needed = disk_needed_bytes(model_bytes, cfg.method, trainable)
    return check_disk(shutil.disk_usage(where).free, needed, where)


# ---- files: model folder, data, output_dir ------------------------------------------


def check_model_files(folder: Path, names: set[str], has_template: bool) -> list[Check]:
    """From the folder's file names alone: config, safetensors weights, template, tokenizer."""
    config = (
        _pass("model config", f"{folder}/config.json")
        if "config.json" in names
        else _fail("model config", "error", f"{folder} has no config.json",
                   "point model at a Hugging Face model folder (with config.json)")
    )
    return [config, _weights_check(folder, names), _template_check(folder, has_template),
            _tokenizer_check(folder, names)]


def _weights_check(folder: Path, names: set[str]) -> Check:
    safetensors = sorted(n for n in names if n.endswith(".safetensors"))
    pickles = sorted(n for n in names if n.endswith(WEIGHT_SUFFIXES))
    if safetensors:
        return _pass("model weights", ", ".join(safetensors[:3]))
    if pickles:
        return _fail(
            "model weights", "error", f"{folder} holds only {', '.join(pickles[:3])}: ftagent "
            "loads safetensors only (pickled weights can run code when loaded)",
            "convert them to safetensors once, from a trusted source: python -c \"from "
            "transformers import AutoModelForCausalLM as M; "
            f"M.from_pretrained('{folder}').save_pretrained('{folder}')\"",
        )
    return _fail("model weights", "error", f"{folder} has no *.safetensors weights",
                 "point model at a folder with the model's safetensors files")


def _template_check(folder: Path, has_template: bool) -> Check:
    if has_template:
        return _pass("chat template", "the tokenizer has a chat template")
    return _fail(
        "chat template", "error", f"{folder} has no chat template: chat examples cannot be "
        "formatted",
        "use an instruct model (e.g. model: smollm2-135m-instruct), or set a template: "
        f"write it to {folder}/chat_template.jinja",
    )


def _tokenizer_check(folder: Path, names: set[str]) -> Check:
    found = [n for n in TOKENIZER_FILES if n in names]
    if found:
        return _pass("tokenizer", ", ".join(found))
    return _fail(
        "tokenizer", "error", f"{folder} has no tokenizer files ({', '.join(TOKENIZER_FILES)})",
        f"copy the base model's tokenizer files into {folder} (tokenizer.save_pretrained)",
    )


def check_data_file(field: str, path: str, size: int | None) -> Check:
    if size is None:
        return _fail(field, "error", f"{field} {path} does not exist (or is not a file)",
                     f"correct {field} in the config (a relative path is read from the "
                     "directory training starts in)")
    if size == 0:
        return _fail(field, "error", f"{field} {path} is empty",
                     f"regenerate it (ftagent data prepare) or point {field} at the data")
    return _pass(field, f"{path} ({size} bytes)")


def _file_size(path: str) -> int | None:
    p = Path(path).expanduser()
    return p.stat().st_size if p.is_file() else None


def check_output_dir(path: str, entries: set[str]) -> Check:
    """A finished run is evidence for a result; training into it would overwrite it."""
    finished = [m for m in FINISHED_MARKERS if m in entries]
    if finished:
        return _fail(
            "output_dir", "error", f"{path} holds a finished run ({', '.join(finished)}); "
            "finished runs are never overwritten",
            f"choose a new output_dir (e.g. {path.rstrip('/')}-2)",
        )
    if "checkpoints" in entries:
        return _pass("output_dir", f"{path} holds checkpoints: training resumes from the last")
    return _pass("output_dir", f"{path} is free")


def _entries(path: Path) -> set[str]:
    return {p.name for p in path.iterdir()} if path.is_dir() else set()


# ---- the whole check ----------------------------------------------------------------


def _model_folder(cfg: TrainConfig, model_dir: Path | None) -> tuple[Path | None, list[Check]]:
    if model_dir is None:
        from ftagent.tools.models import ModelNotFoundError, resolve_model

        try:
            model_dir = resolve_model(cfg.model).path
        except ModelNotFoundError as exc:
            return None, [_fail("model", "error", str(exc), "set model to a local HF folder "
                                "or smollm2-135m-instruct")]
    from ftagent.tools.registry import has_chat_template

    folder = Path(model_dir)
    try:
        template = has_chat_template(folder)
    except (OSError, ValueError):  # unreadable tokenizer_config.json: the tokenizer check says
        template = False
    return folder, check_model_files(folder, _entries(folder), template)


def _shape(folder: Path | None) -> Shape | None:
    try:
        return shape_from_config(json.loads((folder / "config.json").read_text()))
    except (TypeError, OSError, ValueError, KeyError):
        return None  # the model config check already reports it


def preflight(
    cfg: TrainConfig, hw: Hardware | None = None, model_dir: Path | None = None
) -> PreflightReport:
    """Every check, cheapest first; only the QLoRA probe touches the accelerator."""
    if hw is None:
        from ftagent.tools.hardware import probe

        hw = probe(existing_parent(Path(cfg.output_dir)))
    gpu = hw.gpus[0] if hw.gpus else None
    checks = version_checks()
    checks.append(check_cuda(gpu, *_probe_cuda()))
    compute = cfg.quantization.compute_dtype if cfg.method == "qlora" else "auto"
    checks.append(check_bf16(cfg.bf16, gpu, hw.cpu_bf16, compute))
    folder, model_checks = _model_folder(cfg, model_dir)
    checks += model_checks
    shape = _shape(folder)
    if shape:
        checks.append(memory_check(shape, cfg, hw))
    if folder:
        checks.append(disk_check(cfg, folder, shape))
    checks.append(check_data_file("train_file", cfg.train_file, _file_size(cfg.train_file)))
    if cfg.val_file:
        checks.append(check_data_file("val_file", cfg.val_file, _file_size(cfg.val_file)))
    out = Path(cfg.output_dir).expanduser()
    checks.append(check_output_dir(cfg.output_dir, _entries(out)))
    if cfg.method == "qlora":
        checks.append(qlora_check("cuda" if gpu else "cpu", cfg.quantization))
    return PreflightReport(checks=checks)


def format_report(report: PreflightReport) -> str:
    """A plain-text table, one check a line, each fix under its failure."""
    label = {"error": "FAIL", "warning": "WARN", "info": "ok"}
    width = max((len(c.name) for c in report.checks), default=5)
    lines = [f"{'':4}  {'check':<{width}}  detail"]
    for c in report.checks:
        lines.append(f"{label[c.severity] if not c.ok else 'ok':4}  {c.name:<{width}}  {c.detail}")
        if c.fix and not c.ok:
            lines.append(f"{'':4}  {'':<{width}}  fix: {c.fix}")
    n_err, n_warn = len(report.errors), len(report.warnings)
    verdict = "ready to train" if report.ok else "training would fail; fix the errors above"
    lines.append(f"\npre-flight: {n_err} error(s), {n_warn} warning(s): {verdict}")
    return "\n".join(lines)
