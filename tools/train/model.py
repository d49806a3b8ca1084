"""Loading the model for training: dtype, 4-bit quantisation, attention kernel and the PEFT
config of each method. No training happens here."""

from __future__ import annotations

from ftagent.tools.config.train_config import PROMPT_METHODS, TrainConfig


def use_bf16(setting) -> bool:
    import torch

    if setting == "auto":
        if torch.cuda.is_available():
            return torch.cuda.is_bf16_supported()
        from ftagent.tools.hardware import _cpu_has_bf16

        return _cpu_has_bf16()
    return bool(setting)


def padding_free(cfg: TrainConfig) -> bool:
    """Padding-free batches flatten examples into one row; virtual tokens (prompt and prefix
    tuning) are prepended per row, so those methods keep padded rows, as does DPO (chosen
    and rejected answers are scored side by side in padded rows)."""
    return ((cfg.padding_free or cfg.packing) and cfg.method not in PROMPT_METHODS
            and cfg.objective == "sft")


def shares_prefix(cfg: TrainConfig) -> bool:
    """Shared-prefix batches need the per-example attention that reads their layout (a
    kernel chosen by name, flash, sdpa or eager, turns them off) and, for SFT, padding-free
    rows. DPO shares each pair's prompt (tools/train/dpo_shared.py) where its reference is
    the base with the adapter disabled: LoRA and QLoRA."""
    if not cfg.shared_prefix or cfg.attn_implementation not in ("auto", "varlen"):
        return False
    if cfg.objective == "dpo":
        return cfg.method in ("lora", "qlora")
    return padding_free(cfg)


def attention_for(cfg: TrainConfig) -> str:
    """The attention kernel: per-example SDPA for shared-prefix batches; otherwise
    flash-attention on CUDA when installed, otherwise per-example SDPA for padding-free
    batches (exact, no cross-example mask), otherwise plain SDPA."""
    choice = cfg.attn_implementation
    if choice == "auto":
        import importlib.util

        import torch

        if shares_prefix(cfg):
            # Its calls run SDPA per example and per shared prefix, on CUDA too (flash-
            # attention's varlen kernel has no prefix shared by several sequences).
            choice = "varlen"
        elif not padding_free(cfg):
            choice = "sdpa"
        elif torch.cuda.is_available() and importlib.util.find_spec("flash_attn") is not None:
            choice = "flash_attention_2"
        else:
            choice = "varlen"
    if choice == "varlen":
        from ftagent.tools.train.attention import register

        return register()
    return choice


def load_model(cfg: TrainConfig):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.model, trust_remote_code=cfg.trust_remote_code)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    # Frozen base weights in bf16 where the hardware has it; trainable adapter weights stay
    # fp32 (PEFT's default), so updates are not lost to bf16 rounding.
    kwargs: dict = {"dtype": torch.bfloat16 if use_bf16(cfg.bf16) else torch.float32,
                    "attn_implementation": attention_for(cfg),
                    "trust_remote_code": cfg.trust_remote_code, "use_safetensors": True}
    if cfg.method == "qlora":
        from transformers import BitsAndBytesConfig

        q = cfg.quantization
        compute = kwargs["dtype"] if q.compute_dtype == "auto" else getattr(torch, q.compute_dtype)
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True,
            bnb_4bit_quant_type=q.quant_type,
            bnb_4bit_use_double_quant=q.double_quant,
            bnb_4bit_compute_dtype=compute,
        )
    model = AutoModelForCausalLM.from_pretrained(cfg.model, **kwargs)
    if cfg.method == "qlora":
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(
            model, use_gradient_checkpointing=cfg.gradient_checkpointing
        )
    return model, tokenizer


def peft_config(cfg: TrainConfig):
    """The PEFT config of the method (None for full fine-tuning)."""
    if cfg.method == "full":
        return None
    if cfg.method == "prompt_tuning":
        from peft import PromptTuningConfig, PromptTuningInit

        text = cfg.prompt_learning.init_text
        return PromptTuningConfig(
            task_type="CAUSAL_LM",
            num_virtual_tokens=cfg.prompt_learning.num_virtual_tokens,
            prompt_tuning_init=PromptTuningInit.TEXT if text else PromptTuningInit.RANDOM,
            prompt_tuning_init_text=text,
            tokenizer_name_or_path=cfg.model if text else None,
        )
    if cfg.method == "prefix_tuning":
        from peft import PrefixTuningConfig

        return PrefixTuningConfig(task_type="CAUSAL_LM",
                                  num_virtual_tokens=cfg.prompt_learning.num_virtual_tokens)
    from peft import LoraConfig

    return LoraConfig(
        r=cfg.lora.r,
        lora_alpha=cfg.lora.alpha,
        lora_dropout=cfg.lora.dropout,
        target_modules=cfg.lora.target_modules,
        use_dora=cfg.lora.use_dora,
        use_rslora=cfg.lora.use_rslora,
        task_type="CAUSAL_LM",
    )


def adapter_signature(cfg: TrainConfig) -> dict:
    """What a checkpoint's adapter must share with this config to be resumed."""
    if cfg.method == "full":
        return {"method": "full"}
    if cfg.method in PROMPT_METHODS:
        return {"method": cfg.method,
                "num_virtual_tokens": cfg.prompt_learning.num_virtual_tokens}
    lora = cfg.lora
    return {"method": cfg.method, "r": lora.r, "alpha": lora.alpha,
            "target_modules": sorted(lora.target_modules) if isinstance(lora.target_modules, list)
            else lora.target_modules, "use_dora": lora.use_dora, "use_rslora": lora.use_rslora,
            "modules_to_save": None}
