"""Semantic checks of a training config, beyond what pydantic's types catch: settings that
load fine but train badly (or not at all) on this model. Each finding says what to do."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from ftagent.tools.config.train_config import PROMPT_METHODS, TrainConfig
from ftagent.tools.data.facts import TokenFacts
from pydantic import BaseModel

DEFAULT_TARGETS = ["q_proj", "k_proj", "v_proj", "o_proj"]


class Finding(BaseModel):
    severity: Literal["error", "warning"]
    field: str
    message: str
    action: str


def _error(field: str, message: str, action: str) -> Finding:
    return Finding(severity="error", field=field, message=message, action=action)


def _warning(field: str, message: str, action: str) -> Finding:
    return Finding(severity="warning", field=field, message=message, action=action)


def _learning_rate(cfg: TrainConfig) -> list[Finding]:
    """Usual ranges: adapters tolerate (and need) far higher rates than full fine-tuning,
    which forgets what the base model knew when pushed above ~1e-4."""
    lr = cfg.learning_rate
    if cfg.objective == "dpo":
        # DPO moves a policy away from its reference: rates 10-100x below SFT's.
        high = 1e-5 if cfg.method == "full" else 1e-4
        if lr > 10 * high or lr < 1e-8:
            return [_error("learning_rate", f"{lr:g} is far outside DPO's usual range "
                           f"(5e-7..{high:g})", "use 5e-7 (full) or 5e-6 (adapters)")]
        if lr > high:
            return [_warning("learning_rate", f"{lr:g} is high for DPO: the policy may drift "
                             "from its reference", f"use at most {high:g}")]
        return []
    if cfg.method == "full":
        if lr > 1e-3:
            return [_error("learning_rate", f"{lr:g} will wreck the base model's weights in "
                           "full fine-tuning", "use 1e-5..5e-5 (at most 1e-4)")]
        if lr > 1e-4:
            return [_warning("learning_rate", f"{lr:g} is high for full fine-tuning and "
                             "risks forgetting", "use 1e-5..5e-5, or switch to method lora")]
        return []
    if cfg.method in PROMPT_METHODS:
        # Only a few virtual-token embeddings move: they need rates LoRA would diverge at.
        if not 1e-4 <= lr <= 1.0:
            return [_warning("learning_rate", f"{lr:g} is outside 1e-4..1 where prompt and "
                             "prefix tuning usually learn", "use 1e-3..3e-2")]
        return []
    if not 1e-5 <= lr <= 1e-2:
        return [_error("learning_rate", f"{lr:g} is outside 1e-5..1e-2, where LoRA either "
                       "learns nothing or diverges", "use 1e-4..5e-4 (2e-4 is the usual)")]
    if not 5e-5 <= lr <= 2e-3:
        return [_warning("learning_rate", f"{lr:g} is outside the usual LoRA range "
                         "5e-5..2e-3", "use 1e-4..5e-4 unless you measured otherwise")]
    return []


def _lora_shape(cfg: TrainConfig, model_config: dict | None) -> list[Finding]:
    if cfg.method == "full" or cfg.method in PROMPT_METHODS:
        return []
    out = []
    r, alpha = cfg.lora.r, cfg.lora.alpha
    hidden = (model_config or {}).get("hidden_size")
    if hidden and r > hidden:
        out.append(_error("lora.r", f"rank {r} exceeds the model's hidden size {hidden}: "
                          "the adapter cannot be that wide", f"use r <= {hidden} (8-64 typical)"))
    # rsLoRA scales by alpha/sqrt(r), so the usual alpha = r..4r does not apply to it
    if not cfg.lora.use_rslora and not r / 2 <= alpha <= 8 * r:
        out.append(_warning("lora.alpha", f"alpha {alpha} is far from r..4r ({r}..{4 * r}); "
                            f"the update is scaled by alpha/r = {alpha / r:g}",
                            f"set alpha = 2*r = {2 * r}"))
    return out


def _architecture(cfg: TrainConfig, model_config: dict | None) -> str | None:
    archs = (model_config or {}).get("architectures")
    if archs:
        return archs[0]
    from ftagent.tools.registry import lookup

    card = lookup(cfg.model)
    return card.architecture if card else None


def _valid_targets(cfg: TrainConfig, model_config: dict | None) -> list[str] | None:
    from ftagent.tools.registry import lora_targets

    arch = _architecture(cfg, model_config)
    return lora_targets(arch, "all_linear") if arch else None


def _targets(cfg: TrainConfig, model_config: dict | None) -> list[Finding]:
    targets = cfg.lora.target_modules
    if cfg.method == "full" or cfg.method in PROMPT_METHODS or targets == "all-linear":
        return []
    valid = _valid_targets(cfg, model_config)
    if valid is None:  # unknown architecture: nothing to check against
        return []
    unknown = [t for t in targets if t not in valid and t != "lm_head"]
    if not unknown:
        return []
    return [_error("lora.target_modules", f"{', '.join(unknown)} not in this architecture "
                   f"({_architecture(cfg, model_config)})",
                   f"use some of {', '.join(valid)}, or 'all-linear'")]


def _context(cfg: TrainConfig, model_config: dict | None) -> int | None:
    if model_config:
        return model_config.get("max_position_embeddings")
    from ftagent.tools.registry import lookup

    card = lookup(cfg.model)
    return card.context if card else None


def _max_length(cfg: TrainConfig, model_config: dict | None) -> list[Finding]:
    context = _context(cfg, model_config)
    if context and cfg.max_length > context:
        return [_error("max_length", f"{cfg.max_length} tokens exceed the model's context "
                       f"of {context} positions", f"set max_length <= {context}")]
    return []


def _quantization(cfg: TrainConfig) -> list[Finding]:
    if cfg.method == "qlora" and cfg.quantization.compute_dtype == "float32":
        return [_warning("quantization.compute_dtype", "float32 compute with a 4-bit base "
                         "doubles activation memory and slows every matmul",
                         "use auto (bfloat16 where supported) or float16")]
    return []


def _schedule(cfg: TrainConfig) -> list[Finding]:
    out = []
    if cfg.early_stopping_patience > 0 and not cfg.val_file:
        out.append(_error("early_stopping_patience", "early stopping watches validation "
                          "loss, but no val_file is set", "set val_file, or patience 0"))
    if cfg.num_epochs > 10:
        out.append(_warning("num_epochs", f"{cfg.num_epochs:g} epochs will likely overfit "
                            "(the model memorises the training set)",
                            "use 1-5 epochs; add data rather than epochs"))
    if cfg.warmup_ratio > 0.3:
        out.append(_warning("warmup_ratio", f"{cfg.warmup_ratio:g} of training is warm-up, "
                            "so the peak rate is barely used", "use 0.03-0.1"))
    return out


def _files(cfg: TrainConfig) -> list[Finding]:
    out = []
    for field, path in (("train_file", cfg.train_file), ("val_file", cfg.val_file)):
        if path and not Path(path).is_file():
            out.append(_error(field, f"{path} does not exist", "point it at a chat JSONL, "
                              "e.g. from `ftagent data prepare DATA --out DIR`"))
    return out


def _estimate_gb(cfg: TrainConfig, model_config: dict, batch: int, checkpointing: bool,
                 device: str, tokens: TokenFacts | None = None) -> float:
    """The pre-flight's estimate (`estimate_for`) of this config over the training rows'
    token facts; without them, every row max_length tokens long, all of it loss (an upper
    bound). bf16 "auto" counts as bf16, as it trains on any machine that has it."""
    from ftagent.tools.plan.estimate import estimate_for, settings_of, shape_from_config

    change: dict = {"batch": batch, "gradient_checkpointing": checkpointing}
    if cfg.lora.target_modules == "all-linear":
        change["lora_targets"] = tuple(_valid_targets(cfg, model_config) or DEFAULT_TARGETS)
    settings = settings_of(cfg, "fp32" if cfg.bf16 is False else "bf16", **change)
    return estimate_for(shape_from_config(model_config), settings,
                        tokens or TokenFacts.worst_case(cfg.max_length), device).total_gb


def fit_to_budget(cfg: TrainConfig, model_config: dict | None, budget_gb: float | None,
                  device: str, tokens: TokenFacts | None = None) -> tuple[TrainConfig, str]:
    """The config changed to fit the memory there is, keeping the effective batch: halve
    batch_size and double grad_accum, then gradient checkpointing. The plan sized the run
    on the data it was given; the prepared split (with its safety rows) may hold longer
    rows. `tokens`: the train file's token facts, the pre-flight's input too, so what fits
    here passes there. Returns the config and what was changed ("" when nothing was)."""
    if not model_config or not budget_gb:
        return cfg, ""
    need = _estimate_gb(cfg, model_config, cfg.batch_size, cfg.gradient_checkpointing, device,
                        tokens)
    start, out = need, cfg
    while need > budget_gb and out.batch_size > 1:
        out = out.model_copy(update={"batch_size": max(1, out.batch_size // 2),
                                     "grad_accum": out.grad_accum * 2})
        need = _estimate_gb(out, model_config, out.batch_size, out.gradient_checkpointing,
                            device, tokens)
    if need > budget_gb and not out.gradient_checkpointing:
        out = out.model_copy(update={"gradient_checkpointing": True})
        need = _estimate_gb(out, model_config, out.batch_size, True, device, tokens)
    if out is cfg:
        return cfg, ""
    return out, (f"fitted to {budget_gb:g} GB: ~{start:.1f} GB at max_length {cfg.max_length} "
                 f"-> ~{need:.1f} GB with batch_size {out.batch_size}, grad_accum "
                 f"{out.grad_accum}, gradient_checkpointing {out.gradient_checkpointing}")


def _memory(cfg: TrainConfig, model_config: dict | None, budget_gb: float | None,
            device: str, tokens: TokenFacts | None) -> list[Finding]:
    """The run's estimate against the memory there is, with the estimate of each fix."""
    if not model_config or not budget_gb:
        return []
    need = _estimate_gb(cfg, model_config, cfg.batch_size, cfg.gradient_checkpointing, device,
                        tokens)
    if need <= budget_gb:
        return []
    fixes = []
    if cfg.batch_size > 1:
        half = max(1, cfg.batch_size // 2)
        gb = _estimate_gb(cfg, model_config, half, cfg.gradient_checkpointing, device, tokens)
        fixes.append(f"batch_size {half} with grad_accum {cfg.grad_accum * 2} "
                     f"(same effective batch, ~{gb:g} GB)")
    if not cfg.gradient_checkpointing:
        gb = _estimate_gb(cfg, model_config, cfg.batch_size, True, device, tokens)
        fixes.append(f"gradient_checkpointing: true (~{gb:g} GB, ~30% slower)")
    fixes = fixes or [f"a shorter max_length than {cfg.max_length}, or method qlora"]
    return [_warning("batch_size", f"estimated {need:g} GB for micro-batch {cfg.batch_size} "
                     f"(max_length {cfg.max_length}), above the {budget_gb:g} GB budget",
                     "try " + " or ".join(fixes))]


def check_config(cfg: TrainConfig, model_config: dict | None = None,
                 memory_budget_gb: float | None = None, device: str = "cpu",
                 tokens: TokenFacts | None = None) -> list[Finding]:
    """All findings, errors first. `model_config` is the base model's config.json; without
    it, the registry's card is used where the model is known, and model checks are skipped
    otherwise. `tokens`: the train file's token facts for the memory estimate (without
    them, rows of max_length tokens)."""
    findings = [
        *_learning_rate(cfg),
        *_lora_shape(cfg, model_config),
        *_targets(cfg, model_config),
        *_max_length(cfg, model_config),
        *_quantization(cfg),
        *_schedule(cfg),
        *_memory(cfg, model_config, memory_budget_gb, device, tokens),
        *_files(cfg),
    ]
    return sorted(findings, key=lambda f: f.severity != "error")


def registry_model_config(name: str) -> dict | None:
    """A config.json-like dict from the registry card, for models not on this machine."""
    from ftagent.tools.plan.estimate import shape_from_config
    from ftagent.tools.registry import lookup

    card = lookup(name)
    if card is None:
        return None
    s = card.shape
    cfg = {
        "architectures": [card.architecture], "max_position_embeddings": card.context,
        "hidden_size": s.hidden_size, "intermediate_size": s.intermediate_size,
        "num_hidden_layers": s.num_layers, "vocab_size": s.vocab_size,
        "num_attention_heads": s.num_heads, "num_key_value_heads": s.num_kv_heads,
        "head_dim": s.head_dim,
    }
    # the card keeps the parameter count, not the tying flag: recover it from the count
    cfg["tie_word_embeddings"] = shape_from_config(cfg | {"tie_word_embeddings": True}).params \
        == s.params
    return cfg
