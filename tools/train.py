"""The training recipe (SFT, or DPO on preference rows), run in its own process so a killed
UI never kills training:

    python -m tools.train path/to/config.yaml

Writes into `output_dir`: `checkpoints/` (resumed from automatically), `metrics.jsonl`
(one JSON object per log step, read live by the agent), `adapter/` (LoRA/QLoRA) or
`model/` (full), `loss.png`, and last `result.json`, whose presence means "finished".
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from tools.atomic import publish_dir, write_json
from tools.train_config import TrainConfig, load_config
from tools.train_sanity import masked_rows, sanity_callback

RESULT_FILE = "result.json"
METRICS_FILE = "metrics.jsonl"
EXIT_ANOMALY = 3


class TrainingAnomaly(RuntimeError):
    """Training stopped early because it could not learn; the message says why and what
    to change."""


def to_prompt_completion(row: dict) -> dict:
    """Conversational prompt/completion: TRL then masks the prompt out of the loss."""
    msgs = row["messages"]
    return {"prompt": msgs[:-1], "completion": msgs[-1:]}


def _use_bf16(setting) -> bool:
    import torch

    if setting == "auto":
        if torch.cuda.is_available():
            return torch.cuda.is_bf16_supported()
        from tools.hardware import _cpu_has_bf16

        return _cpu_has_bf16()
    return bool(setting)


def load_model(cfg: TrainConfig):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(cfg.model)
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    kwargs: dict = {"dtype": torch.bfloat16 if _use_bf16(cfg.bf16) else torch.float32}
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


def _peft_config(cfg: TrainConfig):
    if cfg.method == "full":
        return None
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


def _metrics_callback(path: Path):
    from transformers import TrainerCallback

    class MetricsWriter(TrainerCallback):
        """Append every log line to metrics.jsonl so other processes can follow along."""

        def on_train_begin(self, args, state, control, **kwargs):
            self._write({"event": "begin", "max_steps": state.max_steps, "step": state.global_step})

        def on_log(self, args, state, control, logs=None, **kwargs):
            row = {
                "event": "log",
                "step": state.global_step,
                "max_steps": state.max_steps,
                **peak_memory_mb(),
            }
            row.update({k: v for k, v in (logs or {}).items() if isinstance(v, (int, float))})
            self._write(row)

        def _write(self, row: dict) -> None:
            _append(path, row)

    return MetricsWriter()


def peak_memory_mb() -> dict:
    """Peak memory so far: process RSS (what a CPU run needs) and, on CUDA, the
    allocator's peak (what a GPU run needs)."""
    import resource

    import torch

    out = {"peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)}
    if torch.cuda.is_available():
        out["cuda_peak_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    return out


def read_metrics(output_dir: str | Path) -> list[dict]:
    path = Path(output_dir) / METRICS_FILE
    if not path.exists():
        return []
    rows = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:  # a line being written right now
            break
    return rows


def plot_loss(rows: list[dict], out: Path) -> Path | None:
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    val = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    if not train:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    ax.plot(*zip(*train, strict=True), label="train loss")
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="validation loss")
    ax.set_xlabel("optimizer step")
    ax.set_ylabel("loss")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def last_complete_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest checkpoint that was fully written. A run killed while saving leaves a
    folder without trainer_state.json (the Trainer writes it after weights, optimizer
    and RNG state), which must not be resumed from."""
    if not ckpt_dir.is_dir():
        return None
    found = []
    for path in ckpt_dir.glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and (path / "trainer_state.json").is_file():
            found.append((int(step), path))
    return str(max(found)[1]) if found else None


def _trainer_for(cfg: TrainConfig, model, tokenizer, ds, common: dict, callbacks: list):
    """TRL's SFTTrainer, or DPOTrainer for preference rows. With an adapter, DPO's
    reference model is the base with the adapter disabled: no second copy in memory."""
    if cfg.objective == "dpo":
        from trl import DPOConfig, DPOTrainer

        args = DPOConfig(**common, beta=cfg.dpo_beta)
        cls = DPOTrainer
    else:
        from trl import SFTConfig, SFTTrainer

        args = SFTConfig(**common, packing=cfg.packing,
                         completion_only_loss=cfg.completion_only_loss)
        cls = SFTTrainer
    return cls(
        model=model,
        args=args,
        train_dataset=ds["train"],
        eval_dataset=ds["validation"] if "validation" in ds else None,
        processing_class=tokenizer,
        peft_config=_peft_config(cfg),
        callbacks=callbacks,
    )


def train(cfg: TrainConfig) -> dict:
    """Run (or resume) training; return the result that is also written to result.json."""
    from tools.quiet import quiet_libraries

    quiet_libraries()
    from datasets import load_dataset

    out = Path(cfg.output_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt_dir = out / "checkpoints"
    files = {"train": cfg.train_file} | ({"validation": cfg.val_file} if cfg.val_file else {})
    ds = load_dataset("json", data_files=files)
    if cfg.objective == "sft":
        ds = ds.map(to_prompt_completion, remove_columns=ds["train"].column_names)
    model, tokenizer = load_model(cfg)
    sanity = sanity_callback(lambda problem: _append(out / METRICS_FILE, problem.as_row()))
    has_val = "validation" in ds
    early_stop = has_val and cfg.early_stopping_patience > 0
    # Early stopping keeps the best checkpoint, so evaluations must line up with saves.
    eval_steps = cfg.save_steps if early_stop else cfg.eval_steps
    common = dict(
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
        bf16=_use_bf16(cfg.bf16),
        logging_steps=1,
        logging_nan_inf_filter=False,  # a NaN loss must be seen, not averaged away
        save_strategy="steps",
        save_steps=cfg.save_steps,
        save_total_limit=2,
        eval_strategy=("steps" if eval_steps else "epoch") if has_val else "no",
        eval_steps=eval_steps or None,
        load_best_model_at_end=early_stop,
        metric_for_best_model="eval_loss" if early_stop else None,
        greater_is_better=False if early_stop else None,
        gradient_checkpointing=cfg.gradient_checkpointing,
        max_grad_norm=cfg.max_grad_norm,
        seed=cfg.seed,
        report_to="none",
        dataloader_num_workers=0,
        use_cpu=not _cuda(),
        disable_tqdm=False,
    )
    callbacks = [_metrics_callback(out / METRICS_FILE), sanity] + _early_stopping(cfg, early_stop)
    trainer = _trainer_for(cfg, model, tokenizer, ds, common, callbacks)
    if cfg.objective == "sft":
        _check_loss_tokens(trainer.train_dataset, out / METRICS_FILE)
    resume = last_complete_checkpoint(ckpt_dir)
    started = time.time()
    output = trainer.train(resume_from_checkpoint=resume)
    if sanity.problem:
        raise TrainingAnomaly(f"training stopped early, {sanity.problem}")
    final_name = "model" if cfg.method == "full" else "adapter"
    tmp = out / f".{final_name}.tmp"
    trainer.model.save_pretrained(tmp, safe_serialization=True)
    tokenizer.save_pretrained(tmp)
    publish_dir(tmp, out / final_name)
    rows = read_metrics(out)
    evals = [r["eval_loss"] for r in rows if "eval_loss" in r]
    result = {
        "method": cfg.method,
        "objective": cfg.objective,
        "output": str(out / final_name),
        "global_step": output.global_step,
        "train_loss": output.training_loss,
        "final_eval_loss": evals[-1] if evals else None,
        "train_runtime_s": output.metrics.get("train_runtime"),
        "wall_s": time.time() - started,
        "resumed_from": resume,
        "loss_plot": str(plot_loss(rows, out / "loss.png") or ""),
    }
    write_json(out / RESULT_FILE, result)
    return result


def _append(path: Path, row: dict) -> None:
    row["time"] = time.time()
    with open(path, "a", encoding="utf-8") as fh:
        fh.write(json.dumps(row) + "\n")


def _check_loss_tokens(dataset, metrics: Path) -> None:
    """Rows with no token carrying loss teach nothing; all of them means a broken mask."""
    empty, n = masked_rows(dataset)
    if n and empty == n:
        raise TrainingAnomaly(
            "no training example has a token that carries loss: the chat template or "
            "completion_only_loss masks every answer. Fix: check the loss preview in the data "
            "report, or set completion_only_loss: false to see whether the template is at fault."
        )
    if empty:
        _append(metrics, {"event": "warning", "kind": "masked_rows", "count": empty,
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
        print("usage: python -m tools.train CONFIG.yaml", file=sys.stderr)
        return 2
    try:
        cfg = load_config(argv[0])
    except (OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    try:
        result = train(cfg)
    except TrainingAnomaly as exc:
        print(f"error: {exc}", file=sys.stderr)
        return EXIT_ANOMALY
    print(json.dumps(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
