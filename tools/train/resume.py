"""What a run must keep to be resumed: same data, same adapter, same schedule.

A fingerprint of the config and the data is written when a run starts; before resuming
from a checkpoint it is compared with the current config and data, and with the adapter
config saved inside the checkpoint, so a resume never silently mixes two different runs.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from ftagent.tools.atomic import write_json
from ftagent.tools.config.train_config import TrainConfig

FINGERPRINT_FILE = "fingerprint.json"
BACKOFF_FILE = "oom_backoff.json"


class ResumeMismatch(ValueError):
    """The checkpoint belongs to a different run; the message lists what differs."""


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fingerprint(cfg: TrainConfig) -> dict:
    """The settings a resumed run must share with the run that wrote the checkpoint: the
    data (its bytes), the model, the adapter, and what fixes data order and lr schedule."""
    from ftagent.tools.train.model import adapter_signature

    return {
        "model": cfg.model,
        "objective": cfg.objective,
        "adapter": adapter_signature(cfg),
        "train_sha256": file_sha256(cfg.train_file),
        "val_sha256": file_sha256(cfg.val_file) if cfg.val_file else None,
        "seed": cfg.seed,
        # The effective batch, not the micro-batch: an out-of-memory back-off halves the
        # micro-batch and doubles accumulation, which keeps both data order and schedule.
        "examples_per_step": cfg.batch_size * cfg.grad_accum,
        # Each process takes its own share of every step's rows: a different number of
        # processes (GPUs, or machines) changes the global batch, the data order and the
        # schedule. torchrun sets WORLD_SIZE in every process; a plain run is one.
        "processes": int(os.environ.get("WORLD_SIZE", "1")),
        "max_length": cfg.max_length,
        "padding_free": cfg.padding_free,
        "packing": cfg.packing,
        "learning_rate": cfg.learning_rate,
        "lr_scheduler": cfg.lr_scheduler,
        "warmup_ratio": cfg.warmup_ratio,
        "num_epochs": cfg.num_epochs,
        "max_steps": cfg.max_steps,
    }


def differences(saved: dict, now: dict, prefix: str = "") -> list[str]:
    """Human-readable differences between two fingerprints (pure)."""
    out = []
    for key in sorted(set(saved) | set(now)):
        a, b = saved.get(key), now.get(key)
        if isinstance(a, dict) and isinstance(b, dict):
            out += differences(a, b, f"{prefix}{key}.")
        elif a != b:
            sa, sb = _shorten(json.dumps(a), json.dumps(b))
            out.append(f"{prefix}{key}: checkpoint has {sa}, this config has {sb}")
    return out


def _shorten(a: str, b: str, width: int = 24) -> tuple[str, str]:
    """Both values cut to `width` characters around where they first differ, so that two
    long values with a common start (model paths, module lists) still read differently."""
    if max(len(a), len(b)) <= 40:
        return a, b
    diff = (i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y)
    start = max(0, next(diff, min(len(a), len(b))) - 8)

    def cut(s: str) -> str:
        return ("..." if start else "") + s[start:start + width] + (
            "..." if len(s) > start + width else "")

    return cut(a), cut(b)


def checkpoint_adapter(ckpt: Path) -> dict | None:
    """The adapter signature stored in a checkpoint's adapter_config.json (PEFT's)."""
    path = Path(ckpt) / "adapter_config.json"
    if not path.exists():
        return None
    c = json.loads(path.read_text())
    peft_type = c.get("peft_type")
    if peft_type in ("PROMPT_TUNING", "PREFIX_TUNING"):
        return {"num_virtual_tokens": c.get("num_virtual_tokens")}
    targets = c.get("target_modules")
    return {"r": c.get("r"), "alpha": c.get("lora_alpha"),
            "target_modules": sorted(targets) if isinstance(targets, list) else targets,
            "use_dora": c.get("use_dora", False), "use_rslora": c.get("use_rslora", False),
            "modules_to_save": c.get("modules_to_save")}


def check_resume(out: Path, cfg: TrainConfig, ckpt: str | None) -> dict:
    """Write the fingerprint on a fresh start; before a resume, raise ResumeMismatch when
    the saved fingerprint or the checkpoint's adapter differ from this config."""
    now = fingerprint(cfg)
    path = out / FINGERPRINT_FILE
    if ckpt is None or not path.exists():
        write_json(path, now)
        return now
    saved = json.loads(path.read_text())
    # Runs started before the process count was recorded compare without it.
    problems = differences(saved, {k: v for k, v in now.items() if k in saved or
                                   k != "processes"})
    stored = checkpoint_adapter(Path(ckpt))
    if stored is not None:
        wanted = {k: v for k, v in now["adapter"].items() if k in stored}
        if wanted.get("target_modules") == "all-linear":  # PEFT stores the resolved list
            stored.pop("target_modules")
            wanted.pop("target_modules")
        problems += [f"{ckpt}: {p}" for p in differences(stored, wanted, "adapter.")]
    if problems:
        raise ResumeMismatch(
            f"cannot resume {out} from {Path(ckpt).name}: it was written by a different run.\n  "
            + "\n  ".join(problems)
            + "\nRestore the original config and data, or train into a new output_dir."
        )
    return now


def load_backoff(out: Path) -> dict:
    path = out / BACKOFF_FILE
    return json.loads(path.read_text()) if path.exists() else {}


def save_backoff(out: Path, overrides: dict) -> None:
    write_json(out / BACKOFF_FILE, overrides)
