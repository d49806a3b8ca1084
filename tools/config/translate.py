"""Import and export other tools' training configs: LLaMA-Factory and Axolotl YAML, and
OpenAI fine-tuning jobs. People arrive with a config that already encodes their intent;
translating it (and saying what did not translate) beats asking them to start over.

Absent keys take the *source tool's* default (LLaMA-Factory's lora_dropout 0, alpha 2 x
rank, gradient checkpointing on; Axolotl's sequence_len 512, ...), so an imported config
trains as it would have there. Keys with no ftagent equivalent are returned in `ignored`,
never dropped silently.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Literal

import yaml
from ftagent.tools.config.train_config import TrainConfig
from pydantic import BaseModel, Field, ValidationError

Format = Literal["llamafactory", "axolotl", "openai"]
FORMATS: tuple[str, ...] = ("llamafactory", "axolotl", "openai")
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


def _split_list(value: Any) -> list[str]:
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    return [str(v).strip() for v in value]


def _targets(value: Any) -> list[str] | str:
    names = _split_list(value)
    return "all-linear" if names in (["all"], ["all-linear"], ["all_linear"]) else names


def _scheduler(name: str, key: str, notes: list[str]) -> str:
    if name in SCHEDULERS:
        return name
    notes.append(f"{key} '{name}' has no transformers equivalent; using 'cosine' instead")
    return "cosine"


def _local_file(name: str, source: str, folder: str | None = None) -> str | None:
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


# ---------------------------------------------------------------- LLaMA-Factory

LF_STAGES = {
    "dpo": "DPO", "rm": "reward modelling", "ppo": "PPO", "kto": "KTO", "pt": "pre-training",
}


def _lf_method(k: Keys, source: str) -> str:
    stage = k.take("stage", "sft")
    if stage != "sft":
        raise ConfigImportError(
            f"{source}: stage '{stage}' ({LF_STAGES.get(stage, stage)}): ftagent's trainer "
            "imports only SFT configs so far; use a config with stage: sft"
        )
    k.take("do_train")
    kind = k.take("finetuning_type", "lora")
    if kind not in ("lora", "full"):
        raise ConfigImportError(
            f"{source}: finetuning_type '{kind}' has no ftagent equivalent; use lora or full"
        )
    bits = k.take("quantization_bit")
    backend = k.take("quantization_method", "bitsandbytes")
    if bits is None:
        return kind
    if bits != 4 or backend != "bitsandbytes" or kind != "lora":
        raise ConfigImportError(
            f"{source}: quantization_bit {bits} ({backend}, {kind}): ftagent quantises only "
            "to 4 bits with bitsandbytes for LoRA (qlora); set quantization_bit: 4 or remove it"
        )
    return "qlora"


def _lf_dataset(k: Keys, source: str, notes: list[str]) -> tuple[str, str | None]:
    """LLaMA-Factory names datasets in dataset_dir/dataset_info.json; resolve to files."""
    folder = k.take("dataset_dir", "data")
    info_file = Path(folder) / "dataset_info.json"
    if not info_file.is_file():
        info_file = Path(source).parent / folder / "dataset_info.json"
    info = json.loads(info_file.read_text(encoding="utf-8")) if info_file.is_file() else {}

    def resolve(key: str) -> str | None:
        names = _split_list(k.take(key) or [])
        if not names:
            return None
        if len(names) > 1:
            notes.append(f"{key} lists {len(names)} datasets; ftagent trains on one file: "
                         f"using '{names[0]}' (merge them with `ftagent data prepare`)")
        name = names[0]
        listed = info_file.parent / info.get(name, {}).get("file_name", "\0")
        found = str(listed) if listed.is_file() else _local_file(name, source, folder)
        if found:
            return found
        notes.append(f"{key} '{name}' is not a local file (a LLaMA-Factory dataset name?): "
                     f"set {'train' if key == 'dataset' else 'val'}_file to a chat JSONL")
        return PLACEHOLDER if key == "dataset" else None

    train = resolve("dataset") or PLACEHOLDER
    val = resolve("eval_dataset")
    if k.take("val_size"):
        notes.append("val_size: ftagent validates on a separate val_file; split one off "
                     "with `ftagent data prepare` and set val_file")
    return train, val


def _lf_precision(k: Keys, notes: list[str]) -> bool | str:
    bf16 = k.take("bf16")
    if k.take("fp16"):
        notes.append("fp16: ftagent trains in bf16 or fp32; bf16 set to auto")
        return "auto"
    return "auto" if bf16 is None else bool(bf16)


def _lf_checkpointing(k: Keys, notes: list[str]) -> bool:
    disable = k.take("disable_gradient_checkpointing")
    explicit = k.take("gradient_checkpointing")
    if disable is not None:
        return not disable
    if explicit is not None:
        return bool(explicit)
    notes.append("gradient checkpointing on: LLaMA-Factory enables it unless "
                 "disable_gradient_checkpointing: true")
    return True


def _lf_eval_steps(k: Keys) -> int:
    strategy = k.take("eval_strategy", k.take("evaluation_strategy", "steps"))
    steps = k.take("eval_steps")
    return int(steps) if strategy == "steps" and steps else 0


def from_llamafactory(data: dict, source: str = "<llamafactory>", model: str | None = None
                      ) -> Imported:
    """A LLaMA-Factory training YAML (already parsed) as an ftagent config."""
    k, notes = Keys(data), []
    method = _lf_method(k, source)
    base = k.take("model_name_or_path")
    if not (model or base):
        raise ConfigImportError(f"{source}: model_name_or_path is missing")
    rank = int(k.take("lora_rank", 8))
    train, val = _lf_dataset(k, source, notes)
    if k.take("warmup_steps"):
        notes.append("warmup_steps: ftagent warms up by ratio; set warmup_ratio by hand")
    out = {
        "model": model or base, "method": method, "train_file": train, "val_file": val,
        "output_dir": k.take("output_dir", "output"),
        "lora": {
            "r": rank, "alpha": k.take("lora_alpha") or 2 * rank,
            "dropout": k.take("lora_dropout", 0.0),
            "target_modules": _targets(k.take("lora_target", "all")),
            "use_dora": bool(k.take("use_dora", False)),
            "use_rslora": bool(k.take("use_rslora", False)),
        },
        "quantization": {
            "quant_type": k.take("quantization_type", "nf4"),
            "double_quant": bool(k.take("double_quantization", True)),
        },
        "learning_rate": float(k.take("learning_rate", 5e-5)),
        "num_epochs": float(k.take("num_train_epochs", 3.0)),
        "max_steps": int(k.take("max_steps", -1)),
        "batch_size": k.take("per_device_train_batch_size", 8),
        "grad_accum": k.take("gradient_accumulation_steps", 1),
        "max_length": k.take("cutoff_len", 2048),
        "packing": bool(k.take("packing", False)),
        "warmup_ratio": float(k.take("warmup_ratio", 0.0)),
        "lr_scheduler": _scheduler(k.take("lr_scheduler_type", "linear"), "lr_scheduler_type",
                                   notes),
        "weight_decay": float(k.take("weight_decay", 0.0)),
        "max_grad_norm": float(k.take("max_grad_norm", 1.0)),
        "completion_only_loss": not k.take("train_on_prompt", False),
        "save_steps": k.take("save_steps", 500),
        "eval_steps": _lf_eval_steps(k),
        "seed": k.take("seed", 42),
        "bf16": _lf_precision(k, notes),
        "gradient_checkpointing": _lf_checkpointing(k, notes),
    }
    return build_imported(out, source, "llamafactory", notes, k)


def _hub_id(model: str) -> str:
    """Other tools cannot resolve ftagent's aliases (smollm2-135m-instruct): use the hub id."""
    from ftagent.tools.registry import lookup

    card = lookup(model)
    return card.id if card and card.local and model.lower() == card.local.lower() else model


def to_llamafactory(cfg: TrainConfig) -> dict:
    """An ftagent config as a LLaMA-Factory SFT YAML dict; the dataset is named by its file
    stem in its folder (see `llamafactory_dataset_info` for the entry LLaMA-Factory needs)."""
    train = Path(cfg.train_file)
    out: dict[str, Any] = {
        "model_name_or_path": _hub_id(cfg.model), "stage": "sft", "do_train": True,
        "finetuning_type": "full" if cfg.method == "full" else "lora",
    }
    if cfg.method != "full":
        lora = cfg.lora
        target = lora.target_modules
        out |= {
            "lora_rank": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
            "lora_target": "all" if target == "all-linear" else ",".join(target),
            "use_dora": lora.use_dora, "use_rslora": lora.use_rslora,
        }
    if cfg.method == "qlora":
        out |= {
            "quantization_bit": 4, "quantization_method": "bitsandbytes",
            "quantization_type": cfg.quantization.quant_type,
            "double_quantization": cfg.quantization.double_quant,
        }
    out |= {"dataset": train.stem, "dataset_dir": str(train.parent)}
    if cfg.val_file:
        out["eval_dataset"] = Path(cfg.val_file).stem
    out |= {
        "cutoff_len": cfg.max_length, "packing": cfg.packing,
        "train_on_prompt": not cfg.completion_only_loss, "output_dir": cfg.output_dir,
        "save_steps": cfg.save_steps, "per_device_train_batch_size": cfg.batch_size,
        "gradient_accumulation_steps": cfg.grad_accum, "learning_rate": cfg.learning_rate,
        "num_train_epochs": cfg.num_epochs, "lr_scheduler_type": cfg.lr_scheduler,
        "warmup_ratio": cfg.warmup_ratio, "weight_decay": cfg.weight_decay,
        "max_grad_norm": cfg.max_grad_norm, "seed": cfg.seed,
        "disable_gradient_checkpointing": not cfg.gradient_checkpointing,
    }
    if cfg.max_steps > 0:
        out["max_steps"] = cfg.max_steps
    if cfg.bf16 != "auto":
        out["bf16"] = cfg.bf16
    if cfg.val_file:
        out["eval_strategy"] = "steps" if cfg.eval_steps else "epoch"
        if cfg.eval_steps:
            out["eval_steps"] = cfg.eval_steps
    return out


def llamafactory_dataset_info(cfg: TrainConfig) -> dict:
    """The dataset_info.json entries LLaMA-Factory needs to read ftagent's chat JSONL."""
    entry = {
        "formatting": "sharegpt",
        "columns": {"messages": "messages"},
        "tags": {"role_tag": "role", "content_tag": "content", "user_tag": "user",
                 "assistant_tag": "assistant", "system_tag": "system"},
    }
    files = [cfg.train_file] + ([cfg.val_file] if cfg.val_file else [])
    return {Path(f).stem: {"file_name": Path(f).name, **entry} for f in files}


# ---------------------------------------------------------------- Axolotl

def _ax_method(k: Keys, source: str) -> str:
    adapter = k.take("adapter")
    four, eight = k.take("load_in_4bit", False), k.take("load_in_8bit", False)
    if eight:
        raise ConfigImportError(f"{source}: load_in_8bit: ftagent has no 8-bit training; "
                                "use adapter: qlora with load_in_4bit: true, or plain lora")
    if adapter is None:
        return "full"
    if adapter not in ("lora", "qlora"):
        raise ConfigImportError(f"{source}: adapter '{adapter}' has no ftagent equivalent; "
                                "use lora or qlora")
    return "qlora" if adapter == "qlora" or four else "lora"


def _ax_dataset(entries: Any, key: str, source: str, notes: list[str]) -> str | None:
    if not entries:
        return None
    if len(entries) > 1:
        notes.append(f"{key} lists {len(entries)} datasets; ftagent trains on one file: "
                     "using the first (merge them with `ftagent data prepare`)")
    first = entries[0] if isinstance(entries[0], dict) else {"path": entries[0]}
    path, kind = str(first.get("path", "")), first.get("type", "chat_template")
    found = _local_file(path, source)
    if not found:
        notes.append(f"{key}[0].path '{path}' is not a local file (a hub dataset?): "
                     "download it and set the file in ftagent's config")
    elif kind not in ("chat_template", "sharegpt", "chat_template.default"):
        notes.append(f"{key}[0].type '{kind}': ftagent trains on chat JSONL; convert with "
                     f"`ftagent data prepare {found} --out DIR` and use DIR/train.jsonl")
    return found


def _ax_quant(k: Keys) -> dict:
    bnb = k.take("bnb_config_kwargs") or {}
    dtype = str(bnb.get("bnb_4bit_compute_dtype", "auto")).replace("torch.", "")
    return {
        "quant_type": bnb.get("bnb_4bit_quant_type", "nf4"),
        "double_quant": bool(bnb.get("bnb_4bit_use_double_quant", True)),
        "compute_dtype": dtype,
    }


def _ax_steps(k: Keys, notes: list[str]) -> dict:
    for key, what in (("saves_per_epoch", "save_steps"), ("evals_per_epoch", "eval_steps"),
                      ("warmup_steps", "warmup_ratio")):
        if k.take(key) is not None:
            notes.append(f"{key}: ftagent sets {what} instead (it depends on the data size); "
                         "check it in the config")
    out = {"save_steps": k.take("save_steps"), "eval_steps": k.take("eval_steps", 0)}
    return {key: v for key, v in out.items() if v is not None}


def _ax_checkpointing(k: Keys, notes: list[str]) -> bool:
    value = k.take("gradient_checkpointing", False)
    if isinstance(value, str):
        notes.append(f"gradient_checkpointing '{value}': ftagent uses the standard kind")
    return bool(value)


def from_axolotl(data: dict, source: str = "<axolotl>", model: str | None = None) -> Imported:
    """An Axolotl training YAML (already parsed) as an ftagent config."""
    k, notes = Keys(data), []
    method = _ax_method(k, source)
    base = k.take("base_model")
    if not (model or base):
        raise ConfigImportError(f"{source}: base_model is missing")
    train = _ax_dataset(k.take("datasets"), "datasets", source, notes) or PLACEHOLDER
    val = _ax_dataset(k.take("test_datasets"), "test_datasets", source, notes)
    if k.take("val_set_size"):
        notes.append("val_set_size: ftagent validates on a separate val_file; split one off "
                     "with `ftagent data prepare` and set val_file")
    rank = int(k.take("lora_r", 16))
    modules, linear = k.take("lora_target_modules"), k.take("lora_target_linear", False)
    if fp16 := k.take("fp16"):
        notes.append(f"fp16: {fp16}: ftagent trains in bf16 or fp32")
    out = {
        "model": model or base, "method": method, "train_file": train, "val_file": val,
        "output_dir": k.take("output_dir", "./model-out"),
        "lora": {
            "r": rank, "alpha": k.take("lora_alpha", 2 * rank),
            "dropout": k.take("lora_dropout", 0.0),
            "target_modules": "all-linear" if linear or not modules else _targets(modules),
            "use_dora": bool(k.take("peft_use_dora", False)),
            "use_rslora": bool(k.take("peft_use_rslora", False)),
        },
        "quantization": _ax_quant(k),
        "learning_rate": float(k.take("learning_rate", 2e-4)),
        "num_epochs": float(k.take("num_epochs", 1)),
        "max_steps": int(k.take("max_steps", -1)),
        "batch_size": k.take("micro_batch_size", 1),
        "grad_accum": k.take("gradient_accumulation_steps", 1),
        "max_length": k.take("sequence_len", 512),
        "packing": bool(k.take("sample_packing", False)),
        "warmup_ratio": float(k.take("warmup_ratio", 0.0)),
        "lr_scheduler": _scheduler(k.take("lr_scheduler", "cosine"), "lr_scheduler", notes),
        "weight_decay": float(k.take("weight_decay", 0.0)),
        "max_grad_norm": float(k.take("max_grad_norm", 1.0)),
        "completion_only_loss": not k.take("train_on_inputs", False),
        "seed": k.take("seed", 42),
        "bf16": k.take("bf16", "auto"),
        "gradient_checkpointing": _ax_checkpointing(k, notes),
        "early_stopping_patience": k.take("early_stopping_patience", 0),
        **_ax_steps(k, notes),
    }
    if not (linear or modules) and method != "full":
        notes.append("no lora_target_modules: using all-linear")
    return build_imported(out, source, "axolotl", notes, k)


def _ax_dataset_entry(path: str) -> dict:
    return {"path": path, "type": "chat_template", "field_messages": "messages",
            "ds_type": "json"}


def to_axolotl(cfg: TrainConfig) -> dict:
    """An ftagent config as an Axolotl YAML dict (chat_template datasets on local JSONL)."""
    out: dict[str, Any] = {"base_model": _hub_id(cfg.model)}
    if cfg.method != "full":
        lora, target = cfg.lora, cfg.lora.target_modules
        out |= {
            "adapter": cfg.method, "load_in_4bit": cfg.method == "qlora",
            "lora_r": lora.r, "lora_alpha": lora.alpha, "lora_dropout": lora.dropout,
            "peft_use_dora": lora.use_dora, "peft_use_rslora": lora.use_rslora,
        }
        if target == "all-linear":
            out["lora_target_linear"] = True
        else:
            out["lora_target_modules"] = list(target)
    if cfg.method == "qlora":
        q = cfg.quantization
        out["bnb_config_kwargs"] = {
            "bnb_4bit_quant_type": q.quant_type, "bnb_4bit_use_double_quant": q.double_quant,
        } | ({"bnb_4bit_compute_dtype": q.compute_dtype} if q.compute_dtype != "auto" else {})
    out["datasets"] = [_ax_dataset_entry(cfg.train_file)]
    if cfg.val_file:
        out["test_datasets"] = [_ax_dataset_entry(cfg.val_file) | {"split": "train"}]
    out |= {
        "val_set_size": 0, "output_dir": cfg.output_dir, "sequence_len": cfg.max_length,
        "sample_packing": cfg.packing, "train_on_inputs": not cfg.completion_only_loss,
        "micro_batch_size": cfg.batch_size, "gradient_accumulation_steps": cfg.grad_accum,
        "num_epochs": cfg.num_epochs, "learning_rate": cfg.learning_rate,
        "lr_scheduler": cfg.lr_scheduler, "warmup_ratio": cfg.warmup_ratio,
        "weight_decay": cfg.weight_decay, "max_grad_norm": cfg.max_grad_norm,
        "optimizer": "adamw_torch", "gradient_checkpointing": cfg.gradient_checkpointing,
        "seed": cfg.seed, "save_steps": cfg.save_steps, "bf16": cfg.bf16,
    }
    if cfg.max_steps > 0:
        out["max_steps"] = cfg.max_steps
    if cfg.eval_steps:
        out["eval_steps"] = cfg.eval_steps
    if cfg.early_stopping_patience:
        out["early_stopping_patience"] = cfg.early_stopping_patience
    return out


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
        from ftagent.tools.config.openai_jobs import OPENAI_DEFAULT_MODEL, from_openai_job

        out = data_out or Path(source).parent / f"{Path(source).stem}-data"
        return from_openai_job(data, source, out, model or OPENAI_DEFAULT_MODEL)
    raise ConfigImportError(f"unknown format '{fmt}'; choose one of {', '.join(FORMATS)}")


def load_foreign(path: str | Path, fmt: str | None = None, model: str | None = None,
                 data_out: str | Path | None = None) -> Imported:
    """Read, detect (unless `fmt` is given) and translate a foreign training config."""
    data = read_foreign(path)
    return convert(data, fmt or detect_format(data, str(path)), str(path), model, data_out)

