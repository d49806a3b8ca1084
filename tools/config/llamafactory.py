"""LLaMA-Factory training YAML in and out. Absent keys take LLaMA-Factory's own defaults
(lora_dropout 0, alpha 2 x rank, gradient checkpointing on), so an imported config trains
as it would have there."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ftagent.tools.config.imported import (
    PLACEHOLDER,
    ConfigImportError,
    Imported,
    Keys,
    build_imported,
    hub_id,
    local_file,
    lora_targets,
    scheduler_or_cosine,
    split_list,
)
from ftagent.tools.config.train_config import TrainConfig

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
        names = split_list(k.take(key) or [])
        if not names:
            return None
        if len(names) > 1:
            notes.append(f"{key} lists {len(names)} datasets; ftagent trains on one file: "
                         f"using '{names[0]}' (merge them with `ftagent data prepare`)")
        name = names[0]
        listed = info_file.parent / info.get(name, {}).get("file_name", "\0")
        found = str(listed) if listed.is_file() else local_file(name, source, folder)
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
            "target_modules": lora_targets(k.take("lora_target", "all")),
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
        "lr_scheduler": scheduler_or_cosine(k.take("lr_scheduler_type", "linear"),
                                            "lr_scheduler_type", notes),
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


def to_llamafactory(cfg: TrainConfig) -> dict:
    """An ftagent config as a LLaMA-Factory SFT YAML dict; the dataset is named by its file
    stem in its folder (see `llamafactory_dataset_info` for the entry LLaMA-Factory needs)."""
    train = Path(cfg.train_file)
    out: dict[str, Any] = {
        "model_name_or_path": hub_id(cfg.model), "stage": "sft", "do_train": True,
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
