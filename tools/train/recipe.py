"""The training recipe (SFT, or DPO on preference rows), run in its own process so a killed
UI never kills training:

    python -m ftagent.tools.train path/to/config.yaml

Writes into `output_dir`: `checkpoints/` (resumed from automatically), `metrics.jsonl`
(one JSON object per log step, read live by the agent), `adapter/` (LoRA/QLoRA) or
`model/` (full), `loss.png`, and last `result.json`, whose presence means "finished".
"""

from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path

from ftagent.tools.atomic import publish_dir, write_json
from ftagent.tools.config.train_config import PROMPT_METHODS, TrainConfig, load_config
from ftagent.tools.train.checkpoint import (
    checkpoint_step,
    last_complete_checkpoint,
    with_complete_markers,
)
from ftagent.tools.train.metrics import (
    METRICS_FILE,
    append_row,
    metrics_callback,
    plot_loss,
    read_metrics,
    summarize,
)
from ftagent.tools.train.model import (
    load_model,
    padding_free,
    peft_config,
    shares_prefix,
    use_bf16,
)
from ftagent.tools.train.oom import MAX_RETRIES, backoff, describe
from ftagent.tools.train.resume import ResumeMismatch, check_resume, load_backoff, save_backoff
from ftagent.tools.train.sanity import masked_rows, sanity_callback

RESULT_FILE = "result.json"
EXIT_ANOMALY = 3
ONEDNN_CACHES = {"ONEDNN_PRIMITIVE_CACHE_CAPACITY": "64", "LRU_CACHE_CAPACITY": "64"}

__all__ = ["METRICS_FILE", "RESULT_FILE", "last_complete_checkpoint", "read_metrics", "train",
           "main"]


class TrainingAnomaly(RuntimeError):
    """Training stopped early because it could not learn; the message says why and what
    to change."""


def to_prompt_completion(row: dict) -> dict:
    """Conversational prompt/completion: TRL then masks the prompt out of the loss."""
    msgs = row["messages"]
    return {"prompt": msgs[:-1], "completion": msgs[-1:]}


def _trainer_for(cfg: TrainConfig, model, tokenizer, ds, common: dict, callbacks: list):
    """TRL's SFTTrainer (with the selective loss), or DPOTrainer for preference rows. With
    an adapter, DPO's reference model is the base with the adapter disabled: no second
    copy in memory."""
    if cfg.objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, beta=cfg.dpo_beta)
        cls = DPOTrainer
        if shares_prefix(cfg):
            from ftagent.tools.train.dpo_shared import shared_dpo_trainer_class

            cls = shared_dpo_trainer_class()
    else:
        from ftagent.tools.train.loss import fast_sft_trainer_class
        from trl import SFTConfig

        flat = padding_free(cfg)
        if flat and not cfg.packing:
            # TRL enforces max_length only when packing; rows are cut below instead.
            common = {**common, "max_length": None}
        args = SFTConfig(**common, packing=cfg.packing, padding_free=flat,
                         completion_only_loss=cfg.completion_only_loss)
        cls = _truncating(fast_sft_trainer_class(), None if cfg.packing else cfg.max_length)
    trainer = with_complete_markers(cls)(
        model=model,
        args=args,
        train_dataset=ds["train"],
        eval_dataset=ds["validation"] if "validation" in ds else None,
        processing_class=tokenizer,
        peft_config=peft_config(cfg),
        callbacks=callbacks,
    )
    if cfg.objective == "sft":
        from ftagent.tools.train.loss import keeps_logits

        trainer._selective_loss = cfg.method not in PROMPT_METHODS and keeps_logits(trainer.model)
        if shares_prefix(cfg):
            from ftagent.tools.train.shared_prefix import SharedPrefixCollator

            # TRL refuses a custom collator with padding-free rows; this one wraps TRL's.
            trainer.data_collator = SharedPrefixCollator(trainer.data_collator)
    return trainer


def _truncating(cls, max_length: int | None):
    """The trainer class cutting tokenised rows to max_length (padding-free without
    packing, where TRL leaves rows whole)."""
    if max_length is None:
        return cls

    class Truncating(cls):
        def _prepare_dataset(self, dataset, processing_class, args, *rest, **kwargs):
            # TRL's own truncation (and its drop of fully masked rows) runs during
            # preparation; max_length is set only for it, as the padding-free check in
            # SFTTrainer's constructor refuses it otherwise.
            args.max_length = max_length
            try:
                return super()._prepare_dataset(dataset, processing_class, args, *rest, **kwargs)
            finally:
                args.max_length = None

    return Truncating


def effective_config(cfg: TrainConfig, out: Path) -> TrainConfig:
    """The config with the micro-batch an earlier out-of-memory back-off settled on."""
    overrides = load_backoff(out)
    return cfg.model_copy(update=overrides) if overrides else cfg


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) training; return the result that is also written to result.json.
    On CUDA out-of-memory, retry from the last checkpoint with a halved micro-batch."""
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    bound_onednn_caches()
    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    for _ in range(MAX_RETRIES + 1):
        run_cfg = effective_config(cfg, out)
        try:
            return _train_once(run_cfg, out)
        except Exception as exc:  # only CUDA's OOM is retried
            if not _is_cuda_oom(exc):
                raise
            now = {k: getattr(run_cfg, k) for k in ("batch_size", "grad_accum",
                                                    "gradient_checkpointing")}
            nxt = backoff(**now)
            if nxt is None:
                raise TrainingAnomaly(
                    "out of GPU memory even at micro-batch 1 with gradient checkpointing. "
                    "Fix: lower max_length, use method qlora, or a smaller model.") from exc
            message = describe(now, nxt)
            append_row(out / METRICS_FILE, {"event": "recovered", "kind": "oom", "message": message,
                                         "fix": "set these in the config to skip the retry"})
            print(message, file=sys.stderr)
            save_backoff(out, nxt)
            _free_cuda()
    raise TrainingAnomaly("out of GPU memory after every back-off")


def bound_onednn_caches() -> None:
    """Keep oneDNN's shape caches small. bf16 matmuls on CPU go through oneDNN, which keeps
    what it built for each matmul shape it has run, in its primitive cache and in ideep's
    (1,024 entries each, ~0.3 MB an entry). Padding-free batches bring a new length nearly
    every step, so each step added ~8 entries that were never used again (SmolLM2-135M:
    ~5 MB a step at 1.2k tokens, ~24 MB at 4.8k), and the heap around them fragmented: RSS
    grew with no plateau in sight. A step reuses its few shapes across all layers, which 64
    entries still hold. Read at the first bf16 matmul, not at import; a set value wins."""
    for name, size in ONEDNN_CACHES.items():
        os.environ.setdefault(name, size)


def _train_once(cfg: TrainConfig, out: Path) -> dict:
    """One training attempt, resumed from the last complete checkpoint if there is one;
    the OOM back-off around it may call it again with smaller settings."""
    ckpt_dir = out / "checkpoints"
    resume = last_complete_checkpoint(ckpt_dir)
    check_resume(out, cfg, resume)
    ds = _load_data(cfg)
    model, tokenizer = load_model(cfg)
    # Every rank sees the same gathered loss and diagnoses it; only the main one writes
    # (`main` is set below, before training calls this).
    main = [False]
    sanity = sanity_callback(
        lambda problem: main[0] and append_row(out / METRICS_FILE, problem.as_row()),
        cfg.loss_spike_factor)
    has_val = "validation" in ds
    early_stop = has_val and cfg.early_stopping_patience > 0
    bf16 = use_bf16(cfg.bf16)
    common = _training_args(cfg, ckpt_dir, has_val, early_stop, bf16)
    if "tensorboard" in cfg.report_to:
        import os

        os.environ["TENSORBOARD_LOGGING_DIR"] = str(out / "tensorboard")
    callbacks = [metrics_callback(out / METRICS_FILE), sanity] + _early_stopping(cfg, early_stop)
    trainer = _trainer_for(cfg, model, tokenizer, ds, common, callbacks)
    main[0] = trainer.is_world_process_zero()
    if cfg.objective == "sft" and main[0]:
        _check_loss_tokens(trainer.train_dataset, out / METRICS_FILE, len(ds["train"]))
    started = time.time()
    output = trainer.train(resume_from_checkpoint=resume)
    if sanity.problem:
        raise TrainingAnomaly(f"training stopped early, {sanity.problem}")
    final_name = "model" if cfg.method == "full" else "adapter"
    tmp = out / f".{final_name}.tmp"
    _save_final(trainer, tokenizer, tmp, main[0])
    result: dict = {}
    if main[0]:
        publish_dir(tmp, out / final_name)
        result = _write_result(cfg, out, final_name, trainer, output, model, resume, started,
                               bf16)
    trainer.accelerator.wait_for_everyone()
    return result


def _load_data(cfg: TrainConfig):
    """The train (and validation) JSONL as datasets; SFT rows become prompt/completion
    pairs so the trainer computes the loss on the answer only."""
    from datasets import load_dataset

    files = {"train": cfg.train_file} | ({"validation": cfg.val_file} if cfg.val_file else {})
    ds = load_dataset("json", data_files=files)
    if cfg.objective == "sft":
        ds = ds.map(to_prompt_completion, remove_columns=ds["train"].column_names)
    return ds


def _training_args(cfg: TrainConfig, ckpt_dir: Path, has_val: bool, early_stop: bool,
                   bf16: bool) -> dict:
    """The trainer arguments every objective shares, from the config: one place where
    ftagent's settings meet transformers' names."""
    # Early stopping keeps the best checkpoint, so evaluations must line up with saves.
    eval_steps = cfg.save_steps if early_stop else cfg.eval_steps
    return dict(
        output_dir=str(ckpt_dir),
        num_train_epochs=cfg.num_epochs,
        max_steps=cfg.max_steps,
        per_device_train_batch_size=cfg.batch_size,
        per_device_eval_batch_size=cfg.batch_size,
        gradient_accumulation_steps=cfg.grad_accum,
        learning_rate=cfg.learning_rate,
        lr_scheduler_type=cfg.lr_scheduler,
        warmup_steps=cfg.warmup_ratio,
        weight_decay=cfg.weight_decay,
        max_length=cfg.max_length,
        bf16=bf16,
        logging_steps=1,
        logging_nan_inf_filter=False,  # a NaN loss must be seen, not averaged away
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=cfg.save_total_limit,
        eval_strategy=("steps" if eval_steps else "epoch") if has_val else "no",
        eval_steps=eval_steps or None,
        load_best_model_at_end=early_stop,
        metric_for_best_model="eval_loss" if early_stop else None,
        greater_is_better=False if early_stop else None,
        gradient_checkpointing=cfg.gradient_checkpointing,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        report_to=cfg.report_to or "none",
        dataloader_num_workers=0,
        use_cpu=not _cuda(),
        disable_tqdm=False,
        torch_compile=cfg.torch_compile,
        use_liger_kernel=_liger(cfg),
    )


def _save_final(trainer, tokenizer, tmp: Path, main: bool) -> None:
    """The trained weights into `tmp` (published by the caller, so a crash mid-write
    leaves no half-written adapter or model behind)."""
    if trainer.is_fsdp_enabled or trainer.is_deepspeed_enabled:
        # Sharded weights: every rank takes part in gathering them, the main one writes.
        trainer.save_model(str(tmp))
        if main:
            (tmp / "training_args.bin").unlink(missing_ok=True)  # a pickle; not shipped
    elif main:
        trainer.model.save_pretrained(tmp, safe_serialization=True)
        tokenizer.save_pretrained(tmp)


def _write_result(cfg: TrainConfig, out: Path, final_name: str, trainer, output, model,
                  resume: str | None, started: float, bf16: bool) -> dict:
    """result.json: what was trained, how it went, and the settings that took effect
    (the OOM back-off may have changed them), for the evaluator and the person."""
    ckpt_dir = out / "checkpoints"
    rows = read_metrics(out)
    summary = summarize(rows)
    result = {
        "method": cfg.method,
        "objective": cfg.objective,
        "output": str(out / final_name),
        "global_step": output.global_step,
        "train_loss": output.training_loss,
        **summary,
        "best_checkpoint": trainer.state.best_model_checkpoint,
        # by step, not by name: checkpoint-77 comes before checkpoint-154
        "checkpoints": [str(p) for p in sorted(ckpt_dir.glob("checkpoint-*"),
                                               key=checkpoint_step)],
        "train_runtime_s": output.metrics.get("train_runtime"),
        "wall_s": time.time() - started,
        "resumed_from": resume,
        "world_size": trainer.args.world_size,
        "effective": {"batch_size": cfg.batch_size, "grad_accum": cfg.grad_accum,
                      "gradient_checkpointing": cfg.gradient_checkpointing,
                      "padding_free": padding_free(cfg), "shared_prefix": shares_prefix(cfg),
                      "attention": model.config._attn_implementation, "bf16": bf16},
        "loss_plot": str(plot_loss(rows, out / "loss.png") or ""),
    }
    write_json(out / RESULT_FILE, result)
    return result


def _is_cuda_oom(exc: BaseException) -> bool:
    import torch

    return torch.cuda.is_available() and isinstance(exc, torch.OutOfMemoryError)


def _free_cuda() -> None:
    import gc

    import torch

    gc.collect()
    torch.cuda.empty_cache()


def _liger(cfg: TrainConfig) -> bool:
    if cfg.use_liger_kernel != "auto":
        return bool(cfg.use_liger_kernel)
    import importlib.util

    return _cuda() and importlib.util.find_spec("liger_kernel") is not None


def _check_loss_tokens(dataset, metrics: Path, rows_in: int) -> None:
    """Rows with no token carrying loss teach nothing; all of them means a broken mask."""
    # Packing merges rows into bins, so row counts before and after do not compare.
    packed = "seq_lengths" in dataset.column_names
    empty, n = masked_rows(dataset, None if packed else rows_in)
    if n and empty == n:
        raise TrainingAnomaly(
            "no training example has a token that carries loss: the chat template or "
            "completion_only_loss masks every answer. Fix: check the loss preview in the data "
            "report, or set completion_only_loss: false to see whether the template is at fault."
        )
    if empty:
        append_row(metrics, {"event": "warning", "kind": "masked_rows", "count": empty,
                          "message": f"{empty} of {n} training examples have no token that "
                          "carries loss (answers cut off by max_length?)"})


def _early_stopping(cfg: TrainConfig, on: bool) -> list:
    if not on:
        return []
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=cfg.early_stopping_patience)]


def _cuda() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1:
        print("usage: python -m ftagent.tools.train CONFIG.yaml", file=sys.stderr)
        return 2
    try:
        cfg = load_config(argv[0])
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = train(cfg)
    except ResumeMismatch as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except TrainingAnomaly as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ANOMALY
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
