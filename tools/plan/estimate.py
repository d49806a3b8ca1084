"""Memory and time a training run will need, from the model's shape alone.

Memory (bytes) = runtime + weights + trainable state + activations + logits, where
- runtime: the process before any tensor (CPU: Python + torch + libraries, ~0.8 GB RSS;
  CUDA: context and kernels, ~0.5 GB);
- weights: params x bytes per weight (fp32 4, bf16 2, nf4 ~0.56 with its constants; for
  QLoRA the embeddings and an untied head stay fp32; full fine-tuning on a GPU keeps fp32
  master weights);
- trainable state: for LoRA the adapter's params x 16 bytes (fp32 value 4 + gradient 4 +
  AdamW's two moments 8); for full fine-tuning all params x 3 x the weight bytes
  (gradient + two moments in the weights' dtype; the values are the weights);
- activations kept for backward, per token and layer: bytes x (14 h + 4 i) without
  gradient checkpointing (inputs of the attention and MLP projections, norms, residuals,
  the MLP's gate/up products; attention scores are not kept with SDPA), or bytes x h per
  layer plus one layer's worth with checkpointing; times batch x seq tokens; for
  adapters also two fp32
  copies of every adapted projection's input (PEFT's cast and dropout), per layer kept;
- logits: batch x seq x vocab x 4 bytes x LOGIT_COPIES (fp32 logits, shifted copy,
  log-softmax, gradients, TRL's entropy and accuracy metrics).
The two copy counts are calibrated on the measured runs; the rest is counted.

Time: FLOPs = 6 N tokens for full fine-tuning, ~4 N tokens for LoRA (no weight
gradients for the frozen base), over a device rate (measured or known).
The error against real runs is measured by `evals/bench/estimator.py` and in the docs.
"""

from __future__ import annotations

from pydantic import BaseModel

GB = 2**30
# fp32 copies of the logits alive at the peak: the logits, the shifted copy, log-softmax
# and their gradients, and TRL's entropy / token-accuracy metrics; calibrated on the
# measured runs in evals/bench/estimator.py.
LOGIT_COPIES = 6
LORA_INPUT_COPIES = 2
WEIGHT_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "nf4": 0.5625}
RUNTIME_BYTES = {"cpu": 0.8 * GB, "cuda": 0.5 * GB}
# Sustained training FLOP/s when nothing was measured: 2-core CPU fp32/bf16 (see
# shared/bench reference figures), and dense bf16 on common GPUs at ~40% utilisation.
DEVICE_FLOPS = {
    "cpu-fp32": 1.1e11,
    "cpu-bf16": 1.6e11,
    "A100": 1.25e14,
    "H100": 3.0e14,
    "L4": 4.8e13,
    "T4": 2.6e13,
    "RTX 4090": 6.6e13,
    "gpu": 5.0e13,
}


class Shape(BaseModel):
    params: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    vocab_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int


class Estimate(BaseModel):
    total_gb: float
    parts_gb: dict[str, float]
    trainable_params: int
    tokens_per_step: int
    flops_per_step: float
    seconds_per_step: float | None = None


def lora_params(shape: Shape, r: int, targets: list[str]) -> int:
    """Adapter parameters: r x (in + out) per targeted projection per layer."""
    dims = _projection_dims(shape)
    per_layer = sum(r * (a + b) for name, (a, b) in dims.items() if name in targets)
    return per_layer * shape.num_layers


def _projection_dims(shape: Shape) -> dict[str, tuple[int, int]]:
    """(in, out) features of each linear projection of a decoder block."""
    h, i = shape.hidden_size, shape.intermediate_size
    q_out, kv_out = shape.num_heads * shape.head_dim, shape.num_kv_heads * shape.head_dim
    return {
        "q_proj": (h, q_out),
        "k_proj": (h, kv_out),
        "v_proj": (h, kv_out),
        "o_proj": (q_out, h),
        "gate_proj": (h, i),
        "up_proj": (h, i),
        "down_proj": (i, h),
        # fused projections (Phi-3)
        "qkv_proj": (h, q_out + 2 * kv_out),
        "gate_up_proj": (h, 2 * i),
    }


def estimate(
    shape: Shape,
    method: str = "lora",
    precision: str = "fp32",
    batch: int = 8,
    seq: int = 512,
    lora_r: int = 16,
    lora_targets: tuple[str, ...] = ("q_proj", "k_proj", "v_proj", "o_proj"),
    gradient_checkpointing: bool = False,
    device: str = "cpu",
    device_flops: float | None = None,
    master_fp32: bool = False,
) -> Estimate:
    """`master_fp32`: full fine-tuning with fp32 master weights and optimizer states
    (mixed precision: 4 + 4 + 8 bytes per parameter), as on GPUs; without it the
    weights, gradients and moments all stay in the training dtype (what ftagent's
    trainer does on CPU, measured in the docs)."""
    act_bytes = 2.0 if precision in ("bf16", "fp16") else 4.0
    weight_kind = "nf4" if method == "qlora" else precision
    if method == "full" and master_fp32:
        weight_kind = "fp32"
    weights = shape.params * WEIGHT_BYTES[weight_kind]
    if method == "qlora":
        # prepare_model_for_kbit_training upcasts every non-4-bit parameter (embeddings,
        # norms, an untied lm_head) to fp32.
        emb = embedding_params(shape)
        weights = (shape.params - emb) * WEIGHT_BYTES["nf4"] + emb * 4.0
    trainable = shape.params if method == "full" else lora_params(shape, lora_r, list(lora_targets))
    # Full: weights are already counted; gradient + AdamW's two moments in the weights'
    # dtype. LoRA: PEFT keeps adapters in fp32: value + gradient + two moments.
    state = trainable * (3 * WEIGHT_BYTES[weight_kind] if method == "full" else 16.0)
    tokens = batch * seq
    h, i = shape.hidden_size, shape.intermediate_size
    per_layer_token = act_bytes * (14 * h + 4 * i)
    if gradient_checkpointing:
        activations = tokens * (act_bytes * h * shape.num_layers + per_layer_token)
    else:
        activations = tokens * per_layer_token * shape.num_layers
    if method in ("lora", "qlora"):
        # PEFT casts each adapted projection's input to the adapter's fp32 and keeps its
        # dropout output: two fp32 copies of every targeted input, per layer kept.
        dims = _projection_dims(shape)
        inputs = sum(a for name, (a, _) in dims.items() if name in lora_targets)
        kept = 1 if gradient_checkpointing else shape.num_layers
        activations += tokens * LORA_INPUT_COPIES * 4.0 * inputs * kept
    logits = tokens * shape.vocab_size * 4.0 * LOGIT_COPIES
    runtime = RUNTIME_BYTES["cuda" if device != "cpu" else "cpu"]
    parts = {
        "runtime": runtime,
        "weights": weights,
        "trainable_state": state,
        "activations": activations,
        "logits": logits,
    }
    flops = (6 if method == "full" else 4) * shape.params * tokens
    rate = device_flops or DEVICE_FLOPS.get(
        device if device != "cpu" else f"cpu-{'bf16' if act_bytes == 2 else 'fp32'}"
    )
    return Estimate(
        total_gb=round(sum(parts.values()) / GB, 2),
        parts_gb={k: round(v / GB, 3) for k, v in parts.items()},
        trainable_params=trainable,
        tokens_per_step=tokens,
        flops_per_step=flops,
        seconds_per_step=round(flops / rate, 2) if rate else None,
    )


def _per_layer(h: int, inter: int, heads: int, kv: int, head_dim: int) -> int:
    attn = h * heads * head_dim * 2 + h * kv * head_dim * 2
    return attn + 3 * h * inter + 2 * h


def embedding_params(shape: Shape) -> int:
    """Input embeddings plus an untied output head: the parameters outside the blocks."""
    s = shape
    blocks = s.num_layers * _per_layer(s.hidden_size, s.intermediate_size, s.num_heads,
                                       s.num_kv_heads, s.head_dim)
    return max(0, s.params - blocks - s.hidden_size)


def shape_from_config(cfg: dict) -> Shape:
    """A model's shape from its config.json (Llama-style names; most decoders use them)."""
    h, layers, vocab = cfg["hidden_size"], cfg["num_hidden_layers"], cfg["vocab_size"]
    inter = cfg.get("intermediate_size") or 4 * h
    heads = cfg.get("num_attention_heads") or 1
    kv = cfg.get("num_key_value_heads") or heads
    head_dim = cfg.get("head_dim") or h // heads
    per_layer = _per_layer(h, inter, heads, kv, head_dim)
    emb = vocab * h * (1 if cfg.get("tie_word_embeddings") else 2)
    return Shape(
        params=layers * per_layer + emb + h,
        hidden_size=h,
        intermediate_size=inter,
        num_layers=layers,
        vocab_size=vocab,
        num_heads=heads,
        num_kv_heads=kv,
        head_dim=head_dim,
    )
