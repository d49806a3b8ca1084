"""Axolotl training YAML in and out. Absent keys take Axolotl's own defaults
(sequence_len 512, lora_r 16, ...), so an imported config trains as it would have there."""

from __future__ import annotations

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
)
from ftagent.tools.config.train_config import TrainConfig


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
    found = local_file(path, source)
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
            "target_modules": "all-linear" if linear or not modules else lora_targets(modules),
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
        "lr_scheduler": scheduler_or_cosine(k.take("lr_scheduler", "cosine"), "lr_scheduler",
                                            notes),
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
    out: dict[str, Any] = {"base_model": hub_id(cfg.model)}
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
