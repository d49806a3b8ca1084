"""The set-ups of evals/bench/train_throughput.py and what each child process measures.

Each set-up runs in a child process started by the bench (`--child NAME`), so every one
has its own peak memory and none inherits another's allocator state. The child adds the
same instrumentation to every trainer, whatever built it:

- a counting wrapper around the trainer's data collator, which records the rows it is
  handed (tokens, squared lengths for attention FLOPs, tokens carrying loss) before any
  padding, flattening or prefix sharing: the "real tokens" of a step are the same number
  in every set-up, by construction;
- a TrainerCallback logging, at the end of each optimizer step, the wall time, the
  current RSS (/proc/self/statm) and the peak RSS (getrusage), and the loss of each log.

ftagent's trainer is built inside `recipe.train`; the child reaches it by wrapping
`recipe._trainer_for` in its own process only, so ftagent's code is measured unchanged.
"""

from __future__ import annotations

import json
import os
import resource
import statistics
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
DATA = {"chat": HERE / "data" / "bench_chat.jsonl",
        "banking77": HERE / "data" / "bench_banking77.jsonl"}
LORA = {"r": 16, "alpha": 32, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}
LR = 2e-4
BATCH = 8
SEED = 42
MAX_LENGTH = 1024  # SFTConfig's default; above every row of both bench files: nothing is cut
SETUPS = ["TRL quick-start", "TRL tuned", "ftagent, no sharing", "ftagent"]
OPTIONAL = ["TRL quick-start, fp32", "TRL tuned, padded"]
STEPS_FILE, BATCHES_FILE, FACTS_FILE = "steps.jsonl", "batches.jsonl", "facts.json"


def rows_of(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]


def _append(path: Path, row: dict) -> None:
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def current_rss_mb() -> float:
    """Resident memory now (peak RSS alone cannot show whether memory grows or is flat)."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def _loss_tokens(example: dict) -> int:
    """Positions whose next token carries loss: TRL's labels (-100 elsewhere) after the
    shift, else its completion mask, else every token."""
    if "labels" in example:
        return sum(1 for x in example["labels"][1:] if x != -100)
    if "completion_mask" in example:
        return sum(example["completion_mask"][1:])
    return len(example["input_ids"]) - 1


class CountingCollator:
    """The trainer's collator, recording each batch's rows as handed in (already tokenised
    and truncated, not yet padded, flattened or shared)."""

    def __init__(self, inner, path: Path):
        self.inner, self.path = inner, path

    def __call__(self, examples):
        lens = [len(e["input_ids"]) for e in examples]
        loss = [_loss_tokens(e) for e in examples]
        _append(self.path, {"rows": len(lens), "tokens": sum(lens),
                            "sq_tokens": sum(n * n for n in lens), "loss_tokens": sum(loss)})
        return self.inner(examples)


def step_logger(path: Path):
    """A TrainerCallback writing one row per optimizer step: time, current and peak RSS,
    and the loss (and TRL's own num_tokens) when the step logs."""
    from transformers import TrainerCallback

    class StepLog(TrainerCallback):
        def on_step_end(self, args, state, control, **kwargs):
            row = {"step": state.global_step, "t": time.perf_counter(),
                   "cpu_s": time.process_time(), "load": os.getloadavg()[0],
                   "rss_mb": round(current_rss_mb(), 1),
                   "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
                                        / 1024, 1)}
            import torch

            if torch.cuda.is_available():
                row["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
            _append(path, row)

        def on_log(self, args, state, control, logs=None, **kwargs):
            logs = logs or {}
            if "loss" in logs:
                _append(path, {"step": state.global_step, "loss": logs["loss"],
                               "num_tokens": logs.get("num_tokens")})

    return StepLog()


def instrument(trainer, out: Path) -> None:
    trainer.data_collator = CountingCollator(trainer.data_collator, out / BATCHES_FILE)
    trainer.add_callback(step_logger(out / STEPS_FILE))


def _facts(out: Path, trainer, **extra) -> None:
    import torch

    m = trainer.model
    (out / FACTS_FILE).write_text(json.dumps({
        "bf16_autocast": trainer.args.bf16,
        "weights": str(next(p for p in m.parameters() if not p.requires_grad).dtype),
        "gradient_checkpointing": trainer.args.gradient_checkpointing,
        "padding_free": getattr(trainer, "padding_free", None),
        "completion_only_loss": getattr(trainer, "completion_only_loss", None),
        "attention": m.config._attn_implementation,
        "torch_threads": torch.get_num_threads(), **extra}))


def child_trl(setup: str, data: Path, model: str, out: Path, steps: int) -> None:
    """TRL's SFTTrainer from a model path, a dataset and a LoRA config.

    quick-start: SFTConfig defaults (padded rows, gradient checkpointing, bf16 autocast;
    on a CPU `use_cpu=True`, as TRL's error message asks). tuned: the fastest TRL set-up
    here that keeps the 8-examples-per-step batches: bf16 weights where the CPU has bf16,
    padding_free, no gradient checkpointing, SDPA (TRL has no varlen kernel on a CPU:
    transformers sees the packed position_ids and builds one block-diagonal mask over the
    flattened batch, exact but dense), max_length None (TRL refuses it with padding_free;
    no bench row reaches MAX_LENGTH anyway). tuned, padded: the same with padded rows."""
    import torch
    from datasets import Dataset
    from ftagent.tools.train.model import use_bf16
    from ftagent.tools.train.recipe import to_prompt_completion
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    ds = Dataset.from_list([to_prompt_completion(r) for r in rows_of(data)])
    extra: dict = {} if torch.cuda.is_available() else {"use_cpu": True}
    if setup.endswith("fp32"):
        extra["bf16"] = False
    if setup.startswith("TRL tuned"):
        bf16 = use_bf16("auto")
        extra.update(gradient_checkpointing=False,
                     model_init_kwargs={"dtype": torch.bfloat16 if bf16 else torch.float32,
                                        "attn_implementation": "sdpa"})
        if not setup.endswith("padded"):
            extra.update(padding_free=True, max_length=None)
    args = SFTConfig(output_dir=str(out / "trl"), per_device_train_batch_size=BATCH,
                     learning_rate=LR, max_steps=steps, seed=SEED, logging_steps=1,
                     report_to="none", save_strategy="no", disable_tqdm=True, **extra)
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], target_modules=LORA["targets"],
                      lora_dropout=0.0, task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, peft_config=lora)
    instrument(trainer, out)
    trainer.train()
    _facts(out, trainer)


def child_ftagent(setup: str, data: Path, model: str, out: Path, steps: int,
                  save_steps: int | None = None) -> None:
    """`tools.train.recipe.train` with the config defaults (padding-free rows, per-example
    attention, loss projected only on answer tokens, bf16 base weights, shared prefix),
    or with shared_prefix=False; the bench's settings only where the comparison needs them
    (LoRA, lr, schedule, batch, steps)."""
    from ftagent.tools.config.train_config import LoraSettings, TrainConfig
    from ftagent.tools.train import recipe

    built = recipe._trainer_for
    seen = []

    def hooked(*args, **kwargs):
        trainer = built(*args, **kwargs)
        instrument(trainer, out)
        seen.append(trainer)
        return trainer

    recipe._trainer_for = hooked
    cfg = TrainConfig(model=model, train_file=str(data), output_dir=str(out / "run"),
                      lora=LoraSettings(r=LORA["r"], alpha=LORA["alpha"], dropout=0.0,
                                        target_modules=LORA["targets"]),
                      learning_rate=LR, lr_scheduler="linear", warmup_ratio=0.0,
                      max_steps=steps, batch_size=BATCH, max_length=MAX_LENGTH, seed=SEED,
                      save_steps=save_steps or steps, report_to=[],
                      shared_prefix=setup != "ftagent, no sharing")
    result = recipe.train(cfg)
    _facts(out, seen[-1], effective=result["effective"], shared_prefix=cfg.shared_prefix)


def run_child(setup: str, data: Path, model: str, out: Path, steps: int,
              save_steps: int | None = None) -> None:
    if setup.startswith("TRL"):
        child_trl(setup, data, model, out, steps)
    else:
        child_ftagent(setup, data, model, out, steps, save_steps)


def measure(out: Path, steps: int) -> dict:
    """Real tokens/s over steps 2..N (step 1 warms up), from the child's own step times and
    the token counts of the batches it was fed (the data loader may fetch one batch ahead:
    only the first N batches belong to the N steps)."""
    rows = rows_of(out / STEPS_FILE)
    ends = {r["step"]: r for r in rows if "t" in r}
    losses = {r["step"]: r["loss"] for r in rows if "loss" in r}
    trl_tokens = [r["num_tokens"] for r in rows if r.get("num_tokens") is not None]
    batches = rows_of(out / BATCHES_FILE)[:steps]
    if len(ends) < steps or len(batches) < steps:
        raise RuntimeError(f"{out}: {len(ends)} steps and {len(batches)} batches logged, "
                           f"expected {steps}")
    timed = batches[1:] if steps > 1 else batches
    seconds = ends[steps]["t"] - ends[1]["t"] if steps > 1 else float("nan")
    cpu_s = ends[steps]["cpu_s"] - ends[1]["cpu_s"] if steps > 1 else float("nan")
    last = [losses[s] for s in sorted(losses)][-3:]
    return {
        "tokens_per_s": sum(b["tokens"] for b in timed) / seconds,
        "tokens": sum(b["tokens"] for b in batches),
        "timed_tokens": sum(b["tokens"] for b in timed),
        "timed_sq_tokens": sum(b["sq_tokens"] for b in timed),
        "timed_loss_tokens": sum(b["loss_tokens"] for b in timed),
        "timed_s": seconds,
        # CPU time of the child's threads: less sensitive than wall time to other jobs on
        # a shared machine (never quite immune: caches and memory bandwidth are shared).
        "tokens_per_cpu_s": sum(b["tokens"] for b in timed) / cpu_s,
        "load": statistics.median(ends[s]["load"] for s in range(1, steps + 1)),
        "batch_tokens": [b["tokens"] for b in batches],
        "trl_num_tokens": trl_tokens[-1] if trl_tokens else None,
        "peak_mb": max(r.get("cuda_peak_mb", r["peak_rss_mb"]) for r in ends.values()),
        "final_loss": sum(last) / len(last),
        "losses": [round(losses[s], 4) for s in sorted(losses)],
        "facts": json.loads((out / FACTS_FILE).read_text()),
    }


def matmul_ceiling(device: str, seconds: float = 2.0) -> dict:
    """Sustained GFLOP/s of a 2048x2048 matmul, fp32 and bf16: what the machine gives
    at this moment (other load included), so the model FLOP/s share compares like with
    like."""
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(2048, 2048, dtype=dtype, device=device)
        b = torch.randn(2048, 2048, dtype=dtype, device=device)
        for _ in range(2):
            a @ b
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < seconds:
            a @ b
            n += 1
        if device == "cuda":
            torch.cuda.synchronize()
        out[name] = 2 * 2048**3 * n / (time.perf_counter() - t) / 1e9
    return out


def flop_coefficients(model: str) -> dict:
    """Model FLOPs, as coefficients: per real token (the body), per loss-carrying token (the
    output projection: only those need logits) and per squared row length (attention).

    Linear layers count 4 x their weights (forward, plus the backward's input gradients:
    frozen weights get no weight gradient; LoRA's own few FLOPs are ignored). Causal
    attention of a row of L tokens counts L^2 x d_q FLOPs per matmul (half the square; QK^T
    and AV), forward 2 matmuls, backward 4: 6 x layers x d_q x L^2. What a set-up computes
    beyond that (padding, masked-out blocks, recomputation) is not model FLOPs."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model)
    head_dim = getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads
    dq, kv = head_dim * c.num_attention_heads, head_dim * c.num_key_value_heads
    attn = c.hidden_size * (2 * dq + 2 * kv)
    body = c.num_hidden_layers * (attn + 3 * c.hidden_size * c.intermediate_size)
    return {"token": 4.0 * body, "loss_token": 4.0 * c.vocab_size * c.hidden_size,
            "sq_token": 6.0 * c.num_hidden_layers * dq}


def model_gflops(r: dict, coef: dict) -> float:
    """Model GFLOP/s of one run over its timed steps."""
    flops = (coef["token"] * r["timed_tokens"] + coef["loss_token"] * r["timed_loss_tokens"]
             + coef["sq_token"] * r["timed_sq_tokens"])
    return flops / r["timed_s"] / 1e9
