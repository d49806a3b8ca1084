"""Memory and time a training run will need, from the model's shape and the data's tokens.

One estimate serves the planner, the config check and the trainer's pre-flight:
`estimate_for(shape, settings, tokens)`, where `settings` are the run's choices (from a
config by `settings_of`, or from the planner's own choices) and `tokens` the training rows'
`TokenFacts` (mean and longest row, loss tokens per row, the prefix every row shares),
measured with the model's chat template by `tools.data.tokens.token_facts`.

What a micro-batch computes (`micro_batches`), as the trainer runs it today:
- SFT is padding-free: a micro-batch is its rows end to end, so it computes the sum of their
  lengths, not batch x max_length; with `shared_prefix`, rows that start with the same
  tokens compute them once (p + sum(len - p)). The peak is the micro-batch holding the
  longest row (a run meets every row) with batch - 1 rows of mean length beside it.
- The SFT loss (`tools/train/loss.py`) projects only the positions whose next token carries
  loss (`logits_to_keep`): the logits scale with loss tokens, not with all tokens.
- DPO (chosen and rejected side by side) and prompt/prefix tuning keep padded rows (each as
  long as the batch's longest) and TRL's own loss over every position. With `shared_prefix`
  and an adapter, DPO micro-batches whose prompts are worth sharing are one flattened row
  (`tools/train/dpo_shared.py`): each pair's prompt once, or the prefix all rows share once
  when the grouping prefers it (`_dpo_shared`); TRL's head then scores the row's positions.

Memory (bytes) = runtime + weights + trainable state + activations + logits, where
- runtime: the process before any tensor (CPU: Python, torch, transformers, TRL, PEFT,
  datasets and TensorBoard's writer, RUNTIME_BYTES, calibrated; CUDA: context and kernels);
- weights: params x bytes per weight (fp32 4, bf16 2, nf4 ~0.56 with its constants; for
  QLoRA the embeddings and an untied head stay fp32; full fine-tuning on a GPU keeps fp32
  master weights);
- trainable state: for LoRA the adapter's params x 16 bytes (fp32 value 4 + gradient 4 +
  AdamW's two moments 8); for full fine-tuning all params x 3 x the weight bytes
  (gradient + two moments in the weights' dtype; the values are the weights);
- activations kept for backward, per token and layer: bytes x (14 h + 4 i) without
  gradient checkpointing (inputs of the attention and MLP projections, norms, residuals,
  the MLP's gate/up products; per-example SDPA keeps no attention matrix), or bytes x h per
  layer plus CHECKPOINT_LAYERS layers' worth with checkpointing; for adapters also
  LORA_INPUT_COPIES fp32 copies of every adapted projection's input (PEFT casts it to the
  adapter's fp32 and keeps its dropout output), per layer kept;
- logits: projected positions x vocab x 4 bytes x copies: SELECTIVE_LOGIT_COPIES for the
  selective loss (the projection in the weights' dtype, its fp32 cast, log-softmax and their
  gradients), TRL_LOGIT_COPIES for TRL's loss (also its entropy and accuracy metrics).
The runtime, the LoRA input copies and the checkpointed layers are fitted on measured runs
(`evals/bench/estimator.py`, table in the README: within 7% of peak RSS with LoRA
dropout 0.05, 15-23% high on LoRA runs without dropout, see LORA_INPUT_COPIES); the rest
is counted from the shape.

Time per micro-batch: FLOPs = 6 x block params x tokens for full fine-tuning, 4 x for
adapters (the frozen base needs no weight gradients), plus the LM head on the projected
positions only, plus attention (12 x query-key pairs x heads x head_dim per layer:
QK^T and AV, forward and backward), over the device rate; QLoRA de-quantises its base on
every matmul and gradient checkpointing runs the forward twice (slowdowns below).
"""

from __future__ import annotations

from ftagent.tools.config.train_config import PROMPT_METHODS, TrainConfig
from ftagent.tools.data.facts import MIN_SHARED_PREFIX, TokenFacts, worth_sharing
from pydantic import BaseModel

GB = 2**30
# fp32 copies of the projected logits alive at the peak with the selective loss: the fp32
# logits cross-entropy reads, its log-softmax and the gradient flowing back (the bf16
# projection and its bf16 gradient add half a copy each in bf16). Counted, and checked on
# a run with loss on every token (evals/bench/estimator.py), where the logits are a third
# of the peak.
SELECTIVE_LOGIT_COPIES = 3
# With TRL's own loss (DPO, prompt/prefix tuning): every position's logits, the shifted
# copy, log-softmax and gradients, and TRL's entropy / token-accuracy metrics (calibrated
# on the earlier padded trainer, which used TRL's loss for SFT too; not re-measured).
TRL_LOGIT_COPIES = 6
# fp32 copies of each adapted projection's input kept per layer: PEFT's cast to the
# adapter's fp32 (or the input itself) and its dropout output; fitted: 2.0-2.1 over the
# LoRA runs (attention-only and all-linear, fp32 and bf16) with dropout 0.05. Without
# dropout (the config's default since) PEFT keeps no dropout output, one copy fewer:
# BANKING77, all-linear, 14 steps peaked at 2.46 GB without and 3.09 GB with dropout.
# Both keep two: counting one made runs fit without gradient checkpointing that the
# planner's time model then placed within deadlines and budgets it had refused before
# (a 1.5B model on 2 CPU cores in 4 h, a 7.6B on $1 of A100), untested on real runs;
# the over-count keeps those plans where they were and errs on the safe side.
LORA_INPUT_COPIES = 2
# With gradient checkpointing, layers' worth of activations alive at the peak besides the
# checkpointed inputs: the recomputed layer and its gradients, and what the allocator keeps
# of earlier recomputes (RSS does not shrink when a tensor is freed); fitted on two
# checkpointed runs (921 and 1813 tokens per micro-batch) of SmolLM2's 30 layers.
# On CUDA the caching allocator hands a freed recompute's blocks to the next layer, so
# about the recomputed layer and its gradients stay (two layers' worth; not measured here,
# no GPU: the lent-H100 check in evals/gpu compares it).
CHECKPOINT_LAYERS = {"cpu": 7, "cuda": 2}
WEIGHT_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "nf4": 0.5625}
# The process before any tensor: on CPU the RSS of Python with torch, transformers, TRL,
# PEFT, datasets and TensorBoard's writer loaded, the tokenised dataset and the allocator's
# slack (fitted: 0.65 GB; a 3-step run on 36-token rows peaks at 1.16 GB with 0.5 GB of fp32
# weights); on CUDA the context and kernels.
RUNTIME_BYTES = {"cpu": 0.65 * GB, "cuda": 0.5 * GB}
# Sustained training FLOP/s when nothing was measured: 2-core CPU fp32/bf16 (calibrated on
# the step times of evals/bench/estimator.py). GPUs: tools.gpus (40% of the data sheet's
# dense bf16 peak).
DEVICE_FLOPS = {
    "cpu-fp32": 1.1e11,
    "cpu-bf16": 1.6e11,
}
QLORA_SLOWDOWN = 1.3  # de-quantising the 4-bit base on every matmul
CHECKPOINTING_SLOWDOWN = 1.33  # one extra forward pass
ATTENTION = ("q_proj", "k_proj", "v_proj", "o_proj")
ALL_LINEAR = (*ATTENTION, "gate_proj", "up_proj", "down_proj")


class Shape(BaseModel):
    params: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    vocab_size: int
    num_heads: int
    num_kv_heads: int
    head_dim: int


class MicroBatch(BaseModel):
    """One micro-batch as the model computes it."""

    tokens: int  # tokens through the blocks (padding included where rows are padded)
    logits: int  # positions projected onto the vocabulary
    pairs: int = 0  # query-key pairs attention computes (causal)


class Estimate(BaseModel):
    total_gb: float
    parts_gb: dict[str, float]
    trainable_params: int
    tokens_per_step: int  # tokens of a typical micro-batch
    flops_per_step: float  # forward and backward of a typical micro-batch
    seconds_per_step: float | None = None
    peak_tokens: int = 0  # tokens of the largest micro-batch, which sets the peak
    peak_logits: int = 0  # positions it projects onto the vocabulary


class RunSettings(BaseModel):
    """The choices of a run the estimate depends on: from a config (`settings_of`) or
    from the planner's own choices, so both size a run by the same numbers."""

    method: str = "lora"  # lora | qlora | full | prompt_tuning | prefix_tuning
    objective: str = "sft"  # sft | dpo
    precision: str = "fp32"  # fp32 | bf16 | fp16
    batch: int = 8
    max_length: int = 512
    lora_r: int = 16
    lora_targets: tuple[str, ...] = ATTENTION
    gradient_checkpointing: bool = False
    padding_free: bool = True
    shared_prefix: bool = True
    completion_only_loss: bool = True
    virtual_tokens: int = 20

    @property
    def flat(self) -> bool:
        """Padding-free rows (tools/train/model.py `padding_free`)."""
        return self.padding_free and self.method not in PROMPT_METHODS and self.objective == "sft"

    @property
    def dpo_shared(self) -> bool:
        """DPO pairs computing their prompt once (tools/train/model.py `shares_prefix`)."""
        return self.objective == "dpo" and self.shared_prefix and self.method in ("lora", "qlora")

    @property
    def selective(self) -> bool:
        """The selective loss (tools/train/loss.py): SFT, not prompt/prefix tuning."""
        return self.objective == "sft" and self.method not in PROMPT_METHODS


def train_precision(setting, bf16_here: bool) -> str:
    """The dtype the trainer uses (`use_bf16`): bf16 or fp32, never fp16 on CPU."""
    if setting == "auto":
        return "bf16" if bf16_here else "fp32"
    return "bf16" if setting else "fp32"


def settings_of(cfg: TrainConfig, precision: str, **change) -> RunSettings:
    """A config's settings, optionally changed (batch=2, method="qlora", ...)."""
    targets = cfg.lora.target_modules
    base = RunSettings(
        method=cfg.method, objective=cfg.objective, precision=precision,
        batch=cfg.batch_size, max_length=cfg.max_length, lora_r=cfg.lora.r,
        lora_targets=ALL_LINEAR if targets == "all-linear" else tuple(targets),
        gradient_checkpointing=cfg.gradient_checkpointing,
        padding_free=cfg.padding_free or cfg.packing, shared_prefix=cfg.shared_prefix,
        completion_only_loss=cfg.completion_only_loss,
        virtual_tokens=cfg.prompt_learning.num_virtual_tokens,
    )
    return base.model_copy(update=change) if change else base


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


def _cut(facts: TokenFacts, max_length: int) -> tuple[float, int, float, int]:
    """(mean, longest, mean loss, longest's loss) with rows cut at max_length: the trainer
    cuts a row's end, which is its answer. The mean is taken as min(mean, max_length): a
    little high when only some rows are cut, exact when none is."""
    longest = min(facts.longest, max_length)
    mean = min(facts.mean, float(max_length))
    loss_longest = max(1, facts.loss_longest - (facts.longest - longest))
    loss_mean = max(1.0, min(facts.loss_mean, mean))
    return mean, longest, loss_mean, loss_longest


def micro_batches(run: RunSettings, facts: TokenFacts) -> tuple[MicroBatch, MicroBatch]:
    """(peak, typical) micro-batch of a run: the one with the longest row, and one of mean
    rows (the time per step)."""
    mean, longest, loss_mean, loss_longest = _cut(facts, run.max_length)
    b = run.batch
    if not run.completion_only_loss:  # every token but a row's last predicts one
        loss_mean, loss_longest = max(1.0, mean - 1), max(1, longest - 1)
    if run.flat:
        p = facts.shared_prefix if run.shared_prefix and b > 1 else 0
        p = min(p, longest - 1, int(mean) - 1) if p >= MIN_SHARED_PREFIX else 0
        p = max(p, 0)
        if not worth_sharing((b - 1) * p, b * mean):  # the collator would not share it
            p = 0

        def flat(first: float, first_loss: float) -> MicroBatch:
            rows = first + (b - 1) * mean
            pairs = (first ** 2 + (b - 1) * mean ** 2) / 2
            if p:  # each suffix attends to the one prefix and to itself
                s1, s = first - p, mean - p
                pairs = p * p / 2 + s1 * (p + s1 / 2) + (b - 1) * s * (p + s / 2)
            logits = first_loss + (b - 1) * loss_mean
            return MicroBatch(tokens=round(rows - (b - 1) * p), pairs=round(pairs),
                              logits=round(logits if run.selective else rows))

        return flat(longest, loss_longest), flat(mean, loss_mean)
    if run.dpo_shared:
        shared = _dpo_shared(b, (longest, loss_longest), (mean, loss_mean), facts.shared_prefix)
        if shared:
            return shared
    # Padded rows: every row as long as the batch's longest (DPO: chosen and rejected).
    rows = 2 * b if run.objective == "dpo" else b
    virtual = run.virtual_tokens if run.method == "prompt_tuning" else 0

    def padded(length: float, loss: float) -> MicroBatch:
        n = length + virtual
        return MicroBatch(tokens=round(rows * n), pairs=round(rows * n * n / 2),
                          logits=round(rows * (loss if run.selective else n)))

    # A padded typical batch is still as long as its longest row: the mean of the maximum
    # of b draws, taken between the mean and the longest.
    typical = mean + (longest - mean) * (1 - 1 / (b + 1))
    return padded(longest, loss_longest), padded(typical, loss_mean)


def _dpo_shared(b: int, first: tuple[float, float], rest: tuple[float, float],
                common: int) -> tuple[MicroBatch, MicroBatch] | None:
    """(peak, typical) DPO micro-batches in the shared layout (rejected answers taken as
    long as the chosen ones), or None where the collator would keep padded rows. Rows are
    (length, answer) = prompt + chosen. A pair computes its prompt once but for its last
    token, which each answer's segment repeats; when the rows share `common` leading tokens
    (a system prompt) that the grouping prefers to the pairs' own prompts (`group_units`
    takes it when 2 x common >= a prompt - 1), the batch computes those once instead."""

    def pair(length: float, answer: float) -> tuple[float, float, float]:
        """(unshared tokens, tokens per pair sharing, query-key pairs) of one pair."""
        p = length - answer - 1  # shared: the prompt before its last token
        if p < MIN_SHARED_PREFIX:
            return 2 * length, 2 * length, length * length
        return 2 * length, p + 2 * (answer + 1), p * p / 2 + 2 * (answer + 1) * (p + answer / 2)

    def batch(head: tuple[float, float]) -> MicroBatch | None:
        lengths = [head] + [rest] * (b - 1)
        unshared = sum(pair(n, a)[0] for n, a in lengths)
        prompt = min(n - a for n, a in lengths)
        if b > 1 and common >= MIN_SHARED_PREFIX and 2 * common >= prompt - 1:
            tokens = common + sum(2 * (n - common) for n, _ in lengths)
            pairs = common * common / 2 + sum(2 * (n - common) * (common + (n - common) / 2)
                                              for n, _ in lengths)
        else:
            tokens = sum(pair(n, a)[1] for n, a in lengths)
            pairs = sum(pair(n, a)[2] for n, a in lengths)
        if not worth_sharing(unshared - tokens, unshared):
            return None
        # TRL's fused head scores every position of the row on CPU (only the answers' on
        # CUDA); counted as the padded rows' logits are.
        return MicroBatch(tokens=round(tokens), logits=round(tokens), pairs=round(pairs))

    peak, typical = batch(first), batch(rest)
    return (peak, typical) if peak and typical else None


def estimate_for(shape: Shape, run: RunSettings, facts: TokenFacts, device: str = "cpu",
                 device_flops: float | None = None) -> Estimate:
    """The one estimate of a run: its settings and its data's token facts. Full
    fine-tuning on a GPU is sized with fp32 master weights and moments (mixed precision:
    bf16 weights and moments alone lose small updates), an upper bound where the trainer
    keeps them in bf16; on CPU in the training dtype, as the trainer does."""
    peak, typical = micro_batches(run, facts)
    master_fp32 = run.method == "full" and device != "cpu"
    return estimate(
        shape, run.method, run.precision, run.batch, run.max_length, run.lora_r,
        run.lora_targets, run.gradient_checkpointing, device, device_flops, master_fp32,
        peak=peak, typical=typical, selective=run.selective, objective=run.objective,
    )


def block_params(shape: Shape) -> int:
    """Parameters of the decoder blocks: what every token passes through."""
    return shape.num_layers * _per_layer(shape.hidden_size, shape.intermediate_size,
                                         shape.num_heads, shape.num_kv_heads, shape.head_dim)


def train_flops(shape: Shape, method: str, mb: MicroBatch,
                gradient_checkpointing: bool = False, objective: str = "sft") -> float:
    """FLOPs of one micro-batch, forward and backward, with the slowdowns as extra work;
    DPO also runs the reference model forward (2 FLOPs per parameter and token)."""
    per_param = 6 if method == "full" else 4
    if objective == "dpo":
        per_param += 2
    head = shape.vocab_size * shape.hidden_size
    attention = 12 * mb.pairs * shape.num_heads * shape.head_dim * shape.num_layers
    flops = per_param * (block_params(shape) * mb.tokens + head * mb.logits) + attention
    if method == "qlora":
        flops *= QLORA_SLOWDOWN
    if gradient_checkpointing:
        flops *= CHECKPOINTING_SLOWDOWN
    return float(flops)


def device_key(device: str, precision: str) -> str:
    """The DEVICE_FLOPS entry of a device: CPUs by the training dtype."""
    if device != "cpu":
        return device
    return f"cpu-{'bf16' if precision in ('bf16', 'fp16') else 'fp32'}"


def estimate(
    shape: Shape,
    method: str = "lora",
    precision: str = "fp32",
    batch: int = 8,
    seq: int = 512,
    lora_r: int = 16,
    lora_targets: tuple[str, ...] = ATTENTION,
    gradient_checkpointing: bool = False,
    device: str = "cpu",
    device_flops: float | None = None,
    master_fp32: bool = False,
    *,
    peak: MicroBatch | None = None,
    typical: MicroBatch | None = None,
    selective: bool = False,
    objective: str = "sft",
) -> Estimate:
    """The formula. `peak` / `typical`: the largest and a typical micro-batch
    (`micro_batches`); without them, batch padded rows of seq tokens with TRL's loss over
    every position. `selective`: the logits are the selective loss's (fewer copies).
    `master_fp32`: full fine-tuning with fp32 master weights and optimizer states
    (mixed precision: 4 + 4 + 8 bytes per parameter), as on GPUs; without it the
    weights, gradients and moments all stay in the training dtype (what ftagent's
    trainer does on CPU)."""
    if peak is None:
        peak = MicroBatch(tokens=batch * seq, logits=batch * seq, pairs=batch * seq * seq // 2)
    typical = typical or peak
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
    adapters = method in ("lora", "qlora")
    trainable = (shape.params if method == "full"
                 else lora_params(shape, lora_r, list(lora_targets)) if adapters else 0)
    # Full: weights are already counted; gradient + AdamW's two moments in the weights'
    # dtype. LoRA: PEFT keeps adapters in fp32: value + gradient + two moments.
    state = trainable * (3 * WEIGHT_BYTES[weight_kind] if method == "full" else 16.0)
    tokens = peak.tokens
    h, i = shape.hidden_size, shape.intermediate_size
    per_layer_token = act_bytes * (14 * h + 4 * i)
    # Layers whose activations are alive at the peak: all of them, or with checkpointing
    # CHECKPOINT_LAYERS' worth beside every layer's input.
    checkpointed = CHECKPOINT_LAYERS["cuda" if device != "cpu" else "cpu"]
    kept = min(checkpointed, shape.num_layers) if gradient_checkpointing else shape.num_layers
    activations = tokens * per_layer_token * kept
    if gradient_checkpointing:
        activations += tokens * act_bytes * h * shape.num_layers
    if adapters:
        dims = _projection_dims(shape)
        inputs = sum(a for name, (a, _) in dims.items() if name in lora_targets)
        activations += tokens * LORA_INPUT_COPIES * 4.0 * inputs * kept
    copies = SELECTIVE_LOGIT_COPIES if selective else TRL_LOGIT_COPIES
    logits = peak.logits * shape.vocab_size * 4.0 * copies
    runtime = RUNTIME_BYTES["cuda" if device != "cpu" else "cpu"]
    parts = {
        "runtime": runtime,
        "weights": weights,
        "trainable_state": state,
        "activations": activations,
        "logits": logits,
    }
    flops = train_flops(shape, method, typical, gradient_checkpointing, objective)
    rate = device_flops or DEVICE_FLOPS.get(device_key(device, precision))
    return Estimate(
        total_gb=round(sum(parts.values()) / GB, 2),
        parts_gb={k: round(v / GB, 3) for k, v in parts.items()},
        trainable_params=trainable,
        tokens_per_step=typical.tokens,
        flops_per_step=flops,
        seconds_per_step=round(flops / rate, 2) if rate else None,
        peak_tokens=peak.tokens,
        peak_logits=peak.logits,
    )


def _per_layer(h: int, inter: int, heads: int, kv: int, head_dim: int) -> int:
    attn = h * heads * head_dim * 2 + h * kv * head_dim * 2
    return attn + 3 * h * inter + 2 * h


def embedding_params(shape: Shape) -> int:
    """Input embeddings plus an untied output head: the parameters outside the blocks."""
    return max(0, shape.params - block_params(shape) - shape.hidden_size)


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
