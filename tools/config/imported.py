"""What every translation of a foreign training config shares: the error it raises, the
result it returns, the bookkeeping of keys still to translate, and the small value
conversions (lists, LoRA targets, schedulers, data files, model ids) all three formats
need. It lives apart so the per-format modules depend on it and never on each other.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from ftagent.tools.config.train_config import TrainConfig
from pydantic import BaseModel, Field, ValidationError

PLACEHOLDER = "TODO-set-train-file"
DATA_SUFFIXES = (".jsonl", ".json", ".csv", ".tsv", ".parquet")
# transformers' schedule names; anything else (Axolotl's one_cycle, rex) has no equivalent
SCHEDULERS = {
    "linear", "cosine", "cosine_with_restarts", "polynomial", "constant",
    "constant_with_warmup", "inverse_sqrt", "reduce_lr_on_plateau", "cosine_with_min_lr",
    "warmup_stable_decay",
}


class ConfigImportError(ValueError):
    """A foreign config ftagent cannot translate; the message says which key and why."""


class Imported(BaseModel):
    """A translated config plus everything a person should know about the translation."""

    config: TrainConfig
    format: str
    notes: list[str] = Field(default_factory=list)
    ignored: list[str] = Field(default_factory=list)


class Keys:
    """The source's keys still to translate; what is left at the end is `ignored`.
    Keys set to null (Axolotl's `wandb_project:`) are unset, not settings to report."""

    def __init__(self, data: dict):
        self.rest = {k: v for k, v in data.items() if v is not None}

    def take(self, key: str, default: Any = None) -> Any:
        return self.rest.pop(key, default)

    def ignored(self) -> list[str]:
        return sorted(self.rest)


def build_imported(data: dict, source: str, fmt: str, notes: list[str], keys: Keys) -> Imported:
    """Validate the translated fields; errors name the source file and the ftagent field."""
    try:
        cfg = TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ConfigImportError(f"{source}: cannot translate to ftagent: {problems}") from None
    return Imported(config=cfg, format=fmt, notes=notes, ignored=keys.ignored())


def split_list(value: Any) -> list[str]:
    """Both tools accept a list either as YAML or as one comma-separated string."""
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value]


def lora_targets(value: Any) -> list[str] | str:
    """Each tool spells "every linear layer" its own way; ftagent knows one spelling."""
    names = split_list(value)
    return "all-linear" if names in (["all"], ["all-linear"], ["all_linear"]) else names


def scheduler_or_cosine(name: str, key: str, notes: list[str]) -> str:
    """A schedule transformers lacks would fail at train time; say so now and use cosine."""
    if name in SCHEDULERS:
        return name
    notes.append(f"{key} '{name}' has no transformers equivalent; using 'cosine' instead")
    return "cosine"


def local_file(name: str, source: str, folder: str | None = None) -> str | None:
    """A data file that exists: as written, beside the source config, or in `folder`."""
    base = Path(source).parent
    tries = [Path(name), base / name]
    if folder:
        tries += [Path(folder) / name, base / folder / name]
        tries += [Path(folder) / f"{name}{s}" for s in DATA_SUFFIXES]
        tries += [base / folder / f"{name}{s}" for s in DATA_SUFFIXES]
    for path in tries:
        if path.is_file():
            return str(path)
    return None


def hub_id(model: str) -> str:
    """Other tools cannot resolve ftagent's aliases (smollm2-135m-instruct): use the hub id."""
    from ftagent.tools.registry import lookup

    card = lookup(model)
    return card.id if card and card.local and model.lower() == card.local.lower() else model
