"""The training recipe's config: a typed model with help on every field, saved as a
commented YAML file a person can edit and load back."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from ftagent.tools.atomic import write_text
from pydantic import BaseModel, ConfigDict, Field


class LoraSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    r: int = Field(16, ge=1, description="LoRA rank: capacity of the adapter (8-64 typical)")
    alpha: int = Field(
        32, ge=1, description="LoRA scaling numerator; alpha = 2*r is a safe default"
    )
    # 0 by default, as PEFT's own default: on CPU the dropout's random mask over every
    # adapted projection's input took 17% of a step (all-linear LoRA, BANKING77: 3.60 ->
    # 2.97 s a step without it, the same losses); set it for small sets that overfit.
    dropout: float = Field(0.0, ge=0, lt=1, description="dropout on the LoRA path")
    target_modules: list[str] | Literal["all-linear"] = Field(
        default_factory=lambda: ["q_proj", "k_proj", "v_proj", "o_proj"],
        description="module names that get adapters; 'all-linear' = every linear layer of "
        "this architecture (resolved when the config is written)",
    )
    use_dora: bool = Field(
        False,
        description="DoRA: learn magnitude and direction separately (slower, can help at low r)",
    )
    use_rslora: bool = Field(
        False, description="rsLoRA: scale by alpha/sqrt(r), steadier at high ranks (r >= 64)"
    )


class QuantSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    quant_type: Literal["nf4", "fp4"] = Field(
        "nf4", description="4-bit data type for method qlora; nf4 suits normal-shaped weights"
    )
    double_quant: bool = Field(
        True, description="quantise the quantisation constants too (~0.4 bit/param saved)"
    )
    compute_dtype: Literal["auto", "bfloat16", "float16", "float32"] = Field(
        "auto", description="dtype matmuls run in; auto: bfloat16 where supported"
    )


class PromptLearningSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_virtual_tokens: int = Field(
        20, ge=1, description="learned tokens put before each input (prompt_tuning, prefix_tuning)"
    )
    init_text: str | None = Field(
        None, description="prompt_tuning: start the virtual tokens from this text's embeddings "
        "(e.g. a one-line task description) instead of at random"
    )


PROMPT_METHODS = ("prompt_tuning", "prefix_tuning")


class EvalSettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    primary_metric: str = Field(
        "auto", description="metric the targets apply to (auto: accuracy for classification, "
        "exact_match otherwise)"
    )
    min_gain: float = Field(
        0.05, description="tuned must beat the base model by this much on the primary metric"
    )
    loss_must_drop: bool = Field(
        True, description="held-out answer loss must fall below the base's"
    )


class DeploySettings(BaseModel):
    model_config = ConfigDict(extra="forbid")

    merge: bool = Field(True, description="merge the adapter into the base for serving")
    export_format: Literal["safetensors", "gguf"] = Field(
        "safetensors", description="format of the exported model"
    )
    host: str = Field(
        "127.0.0.1", description="address the server binds to (local only by default)"
    )
    port: int = Field(8000, ge=1, le=65535, description="port of the OpenAI-compatible server")


class TrainConfig(BaseModel):
    """Everything `python -m ftagent.tools.train CONFIG` needs; nothing is read from elsewhere."""

    model_config = ConfigDict(extra="forbid")

    model: str = Field(description="base model: a local HF folder or a name ftagent resolves")
    method: Literal["lora", "qlora", "full", "prompt_tuning", "prefix_tuning"] = Field(
        "lora", description="lora | qlora (4-bit base, bitsandbytes) | full | prompt_tuning | "
        "prefix_tuning (the last two learn a few virtual tokens: cheapest, for small style "
        "adjustments)"
    )
    objective: Literal["sft", "dpo"] = Field(
        "sft", description="sft: learn the answers | dpo: learn to prefer chosen over rejected "
        "answers (rows with prompt, chosen, rejected)"
    )
    dpo_beta: float = Field(
        0.1, gt=0, description="DPO: how far the tuned model may move from the reference "
        "(lower = further); 0.1 is the usual start"
    )
    train_file: str = Field(
        description="JSONL to train on: chat rows ({messages: [...]}) for sft, "
        "{prompt, chosen, rejected} rows for dpo"
    )
    val_file: str | None = Field(None, description="JSONL used for validation loss")
    output_dir: str = Field(description="where checkpoints, the adapter and metrics.jsonl go")
    lora: LoraSettings = Field(default_factory=LoraSettings, description="adapter settings")
    quantization: QuantSettings = Field(
        default_factory=QuantSettings, description="4-bit loading, used when method is qlora"
    )
    prompt_learning: PromptLearningSettings = Field(
        default_factory=PromptLearningSettings,
        description="virtual tokens, used when method is prompt_tuning or prefix_tuning",
    )
    learning_rate: float = Field(2e-4, gt=0, description="peak learning rate")
    num_epochs: float = Field(3, gt=0, description="passes over the training set")
    max_steps: int = Field(-1, description="stop after this many optimizer steps (-1: use epochs)")
    batch_size: int = Field(8, ge=1, description="sequences per device per forward pass")
    grad_accum: int = Field(1, ge=1, description="forward passes per optimizer step")
    max_length: int = Field(512, ge=16, description="tokens per sequence (longer are truncated)")
    padding_free: bool = Field(
        True, description="batch examples end to end with no pad tokens (position ids mark "
        "where each starts; no example attends to another); off for prompt/prefix tuning"
    )
    shared_prefix: bool = Field(
        True, description="rows of a micro-batch that start with the same tokens (a system "
        "prompt, tool schemas, few-shot examples) compute those tokens once; exact, and a "
        "no-op when rows share nothing; SFT: needs padding_free; DPO (LoRA/QLoRA): each "
        "pair's prompt once for chosen and rejected"
    )
    packing: bool = Field(
        False, description="also bin examples (best-fit decreasing) into rows of max_length "
        "tokens; batch_size then counts rows, not examples"
    )
    attn_implementation: Literal[
        "auto", "varlen", "sdpa", "eager", "flash_attention_2", "kernels-community/flash-attn2"
    ] = Field(
        "auto", description="attention kernel; auto: flash_attention_2 on CUDA when installed, "
        "else per-example SDPA (varlen) for padding-free batches, else sdpa"
    )
    torch_compile: bool = Field(
        False, description="compile the model with torch.compile (pays off on long GPU runs; "
        "minutes of compile time on CPU)"
    )
    use_liger_kernel: Literal["auto", True, False] = Field(
        "auto", description="Liger's fused Triton kernels; auto: on CUDA when liger-kernel is "
        "installed"
    )
    report_to: list[str] = Field(
        default_factory=lambda: ["tensorboard"],
        description="where metrics also go besides metrics.jsonl: tensorboard, wandb, mlflow, "
        "trackio ([] for none); TensorBoard logs land in output_dir/tensorboard",
    )
    trust_remote_code: bool = Field(
        False, description="run Python code shipped with the model (only for models you trust)"
    )
    warmup_ratio: float = Field(0.05, ge=0, lt=1, description="fraction of steps warming up")
    lr_scheduler: str = Field("cosine", description="learning-rate schedule (transformers name)")
    weight_decay: float = Field(0.0, ge=0, description="AdamW weight decay")
    completion_only_loss: bool = Field(
        True, description="train only on the assistant's answer, not on the prompt"
    )
    save_steps: int = Field(20, ge=1, description="checkpoint every N optimizer steps")
    save_total_limit: int = Field(
        2, ge=1, description="checkpoints kept on disk (the best one is kept as well)"
    )
    eval_steps: int = Field(0, ge=0, description="validation loss every N steps (0: each epoch)")
    seed: int = Field(42, description="seed for shuffling and initialisation")
    bf16: Literal["auto", True, False] = Field(
        "auto",
        description="bfloat16 weights and compute; auto: where the GPU or CPU has it natively",
    )
    gradient_checkpointing: bool = Field(
        False, description="recompute activations in backward: far less memory, ~30% slower"
    )
    max_grad_norm: float = Field(1.0, gt=0, description="clip gradients to this norm")
    loss_spike_factor: float = Field(
        4.0, gt=1, description="stop when a step's loss exceeds this many times the median of "
        "the last 20 steps (diverging run)"
    )
    early_stopping_patience: int = Field(
        0, ge=0, description="stop after this many evaluations without a better validation "
        "loss, and keep the best checkpoint (0: off; needs val_file)"
    )
    evaluation: EvalSettings = Field(
        default_factory=EvalSettings, description="what the tester must see to pass"
    )
    deployment: DeploySettings = Field(
        default_factory=DeploySettings, description="how the deployer exports and serves"
    )


def _comment(text: str, indent: str = "") -> str:
    return f"{indent}# {text}\n"


def dump_yaml(cfg: TrainConfig, header: str = "", why: dict[str, str] | None = None) -> str:
    """YAML with each field's help above it, so the file explains itself; `why` adds, per
    (dotted) field, the reason this value was chosen."""
    out = [_comment(line) for line in header.splitlines()] if header else []
    data = cfg.model_dump(mode="json")
    why = why or {}
    for name, info in TrainConfig.model_fields.items():
        if info.description:
            out.append(_comment(info.description))
        if name in why:
            out.append(_comment(f"chosen: {why[name]}"))
        sub_model = getattr(cfg, name)
        if isinstance(sub_model, BaseModel):
            out.append(f"{name}:\n")
            for sub, sinfo in type(sub_model).model_fields.items():
                out.append(_comment(sinfo.description or "", "  "))
                if f"{name}.{sub}" in why:
                    out.append(_comment(f"chosen: {why[f'{name}.{sub}']}", "  "))
                line = yaml.safe_dump({sub: data[name][sub]}, default_flow_style=True, width=1e9)
                out.append("  " + line.strip()[1:-1] + "\n")
        else:
            out.append(yaml.safe_dump({name: data[name]}, sort_keys=False))
    return "".join(out)


def save_config(cfg: TrainConfig, path: str | Path, header: str = "") -> Path:
    return write_text(path, dump_yaml(cfg, header))


def load_config(path: str | Path) -> TrainConfig:
    """Load and validate; errors name the file and the field."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ValueError(f"{path}: not valid YAML: {exc}") from None
    from pydantic import ValidationError

    try:
        return TrainConfig.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors()
        )
        raise ValueError(f"{path}: invalid config: {problems}") from None


MAX_LENGTH_CAP = 2048  # longer sequences need a memory plan of their own


def fit_max_length(longest: int | None, cap: int = MAX_LENGTH_CAP) -> int:
    """The data's longest example rounded up to a multiple of 64, within [128, cap]."""
    if not longest:
        return TrainConfig.model_fields["max_length"].default
    return max(128, min(cap, -(-longest // 64) * 64))


def default_epochs(n_train: int) -> float:
    """More passes for small sets, one for large ones (they overfit with more)."""
    return 3.0 if n_train < 500 else 2.0 if n_train < 5000 else 1.0


def default_config(
    model: str,
    method: str,
    train_file: str,
    val_file: str | None,
    output_dir: str,
    n_train: int,
    params: int,
    bf16: bool,
    attempt: int = 1,
    longest_example: int | None = None,
) -> TrainConfig:
    """Defaults scaled to the data when there is no plan: small sets get more epochs,
    small models a higher learning rate; each retry after missed targets trains longer."""
    small = params < 5e8  # small models take (and need) a higher learning rate
    lr = (5e-5 if small else 2e-5) if method == "full" else (1e-3 if small else 2e-4)
    return TrainConfig(
        model=model,
        method=method,
        train_file=train_file,
        val_file=val_file,
        output_dir=output_dir,
        learning_rate=lr,
        num_epochs=default_epochs(n_train) * retry_factor(attempt),
        batch_size=8,
        max_length=fit_max_length(longest_example),
        save_steps=save_cadence(n_train, 8),
        bf16=bf16,
    )


def retry_factor(attempt: int) -> float:
    return 1 + 0.5 * (attempt - 1)


def save_cadence(n_train: int, per_step: int) -> int:
    """Two checkpoints per epoch: a kill loses at most half an epoch."""
    return max(5, -(-n_train // per_step) // 2)


def config_from_plan(
    plan: dict,
    train_file: str,
    val_file: str | None,
    output_dir: str,
    n_train: int,
    attempt: int = 1,
    longest_example: int | None = None,
    method: str | None = None,
) -> TrainConfig:
    """The plan's training section as a config; a retry after missed targets trains
    longer. `method` overrides the plan's (an edit at a later gate)."""
    t = plan["training"]
    method = method or plan["adapter"]
    lora = LoraSettings()
    if t.get("lora_r"):
        lora = LoraSettings(r=t["lora_r"], alpha=t["lora_alpha"],
                            target_modules=t["target_modules"] or lora.target_modules)
    targets = plan["targets"]
    return TrainConfig(
        model=plan["model_path"],
        method=method,
        objective="dpo" if plan.get("objective") == "dpo" else "sft",
        dpo_beta=t.get("dpo_beta") or 0.1,
        train_file=train_file,
        val_file=val_file,
        output_dir=output_dir,
        lora=lora,
        learning_rate=t["learning_rate"],
        num_epochs=t["epochs"] * retry_factor(attempt),
        batch_size=t["batch_size"],
        grad_accum=t["grad_accum"],
        max_length=fit_max_length(longest_example) if longest_example else t["max_length"],
        gradient_checkpointing=t["gradient_checkpointing"],
        save_steps=save_cadence(n_train, t["batch_size"] * t["grad_accum"]),
        bf16=plan["precision"] == "bf16",
        evaluation=EvalSettings(primary_metric=targets["primary_metric"],
                                min_gain=targets["min_gain"],
                                loss_must_drop=targets["loss_must_drop"]),
    )


def apply_overrides(cfg: TrainConfig, overrides: dict) -> TrainConfig:
    """Apply edits such as {"learning_rate": 5e-4, "lora.r": 32}; unknown keys fail loudly."""
    data = cfg.model_dump()
    for key, value in overrides.items():
        if key in ("model", "method") and key not in data:
            continue
        target, *rest = key.split(".")
        if target not in data:
            raise ValueError(f"unknown config field '{key}'")
        if rest:
            if not isinstance(data[target], dict) or rest[0] not in data[target]:
                raise ValueError(f"unknown config field '{key}'")
            data[target][rest[0]] = value
        else:
            data[target] = value
    return TrainConfig.model_validate(data)
