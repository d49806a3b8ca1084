"""Import and export other tools' training configs: LLaMA-Factory and Axolotl YAML, and
OpenAI fine-tuning jobs. People arrive with a config that already encodes their intent;
translating it (and saying what did not translate) beats asking them to start over.

This module is the front door: it reads a foreign file, tells which tool wrote it and
hands it to that tool's translator (`llamafactory`, `axolotl`, `openai_jobs`). Absent keys
take the *source tool's* default, so an imported config trains as it would have there.
Keys with no ftagent equivalent are returned in `ignored`, never dropped silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Literal

import yaml
from ftagent.tools.config.axolotl import from_axolotl
from ftagent.tools.config.imported import ConfigImportError, Imported
from ftagent.tools.config.llamafactory import from_llamafactory
from ftagent.tools.config.openai_jobs import OPENAI_DEFAULT_MODEL, from_openai_job
from ftagent.tools.config.train_config import TrainConfig

Format = Literal["llamafactory", "axolotl", "openai"]
FORMATS: tuple[str, ...] = ("llamafactory", "axolotl", "openai")


def export_notes(cfg: TrainConfig, fmt: str) -> list[str]:
    """What an export loses or needs by hand, so the CLI can say it."""
    notes = []
    if fmt == "llamafactory":
        folder = Path(cfg.train_file).parent
        notes.append(f"LLaMA-Factory reads datasets by name: add the entries printed below to "
                     f"{folder / 'dataset_info.json'}")
        if cfg.early_stopping_patience:
            notes.append("early_stopping_patience has no LLaMA-Factory equivalent: dropped")
        if cfg.method == "qlora" and cfg.quantization.compute_dtype != "auto":
            notes.append("quantization.compute_dtype: LLaMA-Factory derives it from bf16/fp16")
        if cfg.bf16 == "auto":
            notes.append("bf16 auto: LLaMA-Factory has no auto; set bf16: true on GPUs with it")
    if not cfg.completion_only_loss or cfg.packing:
        notes.append("check the loss masking and packing settings against the tool's docs")
    return notes


# ---------------------------------------------------------------- detection

def read_foreign(path: str | Path) -> dict:
    """Parse a YAML or JSON file into a dict; errors name the file."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, yaml.YAMLError) as exc:
        raise ConfigImportError(f"{path}: cannot read: {exc}") from None
    if not isinstance(data, dict):
        raise ConfigImportError(f"{path}: expected a mapping of settings at the top level")
    return data


def detect_format(data: dict, source: str = "<config>") -> str:
    """Which tool wrote this config, from keys only that tool uses."""
    keys = set(data)
    if {"train_file", "output_dir", "model"} <= keys:
        raise ConfigImportError(f"{source}: this is already an ftagent config; "
                                "check it with `ftagent config validate`")
    if "training_file" in keys or ("model" in keys and keys & {"hyperparameters", "method"}):
        return "openai"
    if keys & {"model_name_or_path", "finetuning_type", "cutoff_len", "lora_target", "stage"}:
        return "llamafactory"
    if keys & {"base_model", "micro_batch_size", "sequence_len", "adapter", "datasets"}:
        return "axolotl"
    raise ConfigImportError(
        f"{source}: format not recognised (LLaMA-Factory has model_name_or_path, Axolotl "
        "base_model, an OpenAI job training_file); name it with --from"
    )


def convert(data: dict, fmt: str, source: str, model: str | None = None,
            data_out: str | Path | None = None) -> Imported:
    """Translate parsed foreign settings; OpenAI jobs also copy their data to `data_out`."""
    if fmt == "llamafactory":
        return from_llamafactory(data, source, model)
    if fmt == "axolotl":
        return from_axolotl(data, source, model)
    if fmt == "openai":
        out = data_out or Path(source).parent / f"{Path(source).stem}-data"
        return from_openai_job(data, source, out, model or OPENAI_DEFAULT_MODEL)
    raise ConfigImportError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")


def load_foreign(path: str | Path, fmt: str | None = None, model: str | None = None,
                 data_out: str | Path | None = None) -> Imported:
    """Read, detect (unless `fmt` is given) and translate a foreign training config."""
    data = read_foreign(path)
    return convert(data, fmt or detect_format(data, str(path)), str(path), model, data_out)

