"""Training throughput: ftagent's trainer against TRL's SFT quick-start with LoRA.

    .venv/bin/python evals/bench/train_throughput.py [--steps 12] [--no-fp32]

Same model (bundled SmolLM2-135M, or --model), same skewed-length chat data
(evals/bench/data/bench_chat.jsonl), same LoRA (r 16, alpha 32, q/k/v/o, no dropout), same
optimizer settings (lr 2e-4, linear schedule, no warm-up, seed 42) and 8 examples per
optimizer step, so both see the same batches in the same order. Each set-up runs in its own
process (its own peak memory):

- `TRL quick-start`: `SFTTrainer(model=path, train_dataset=..., peft_config=LoraConfig(...))`
  with SFTConfig's defaults (padded batches, gradient checkpointing on, bf16 autocast; on a
  CPU, `use_cpu=True` as TRL's error message asks);
- `TRL quick-start, fp32`: the same with bf16=False (the shared reference table's setting);
- `ftagent`: `tools.train.recipe.train` with the config defaults (padding-free batches with
  per-example attention, loss projected only on answer tokens, bf16 base weights).

Printed per set-up: real (non-padding) tokens/s over steps 2..N (step 1 warms up), the ratio
to the quick-start, peak RSS (CUDA peak on a GPU), the final loss (mean of the last 3 steps:
the same batches in every set-up) and model FLOP/s as a fraction of a bf16 and an fp32
matmul ceiling measured in this run. Model FLOPs per token count 4 x the non-embedding
parameters (forward, and the backward's input gradients: frozen weights get no weight
gradient; LoRA's own few are ignored) plus 4 x the output projection for tokens that carry
loss (the only ones whose logits a loss needs); attention's own FLOPs are left out, so the
fractions are a floor.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
DATA = Path(__file__).resolve().parent / "data" / "bench_chat.jsonl"
LORA = {"r": 16, "alpha": 32, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]}
LR = 2e-4
SETUPS = ["TRL quick-start", "TRL quick-start, fp32", "ftagent"]


def _rows(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]


def child_trl(model: str, out: Path, steps: int, fp32: bool) -> None:
    """TRL's quick-start: a model path, a dataset and a LoRA config; defaults otherwise."""
    from datasets import Dataset
    from ftagent.tools.train.metrics import metrics_callback
    from ftagent.tools.train.recipe import to_prompt_completion
    from peft import LoraConfig
    from trl import SFTConfig, SFTTrainer

    ds = Dataset.from_list([to_prompt_completion(r) for r in _rows(DATA)])
    import torch

    # On a CPU, SFTConfig's default bf16=True stops with "You need to assign use_cpu";
    # use_cpu=True (what the message asks for) keeps bf16 autocast.
    extra = {"bf16": False} if fp32 else {}
    if not torch.cuda.is_available():
        extra["use_cpu"] = True
    args = SFTConfig(output_dir=str(out / "trl"), per_device_train_batch_size=8,
                     learning_rate=LR, max_steps=steps, seed=42, logging_steps=1,
                     report_to="none", save_strategy="no", disable_tqdm=True, **extra)
    lora = LoraConfig(r=LORA["r"], lora_alpha=LORA["alpha"], target_modules=LORA["targets"],
                      task_type="CAUSAL_LM")
    trainer = SFTTrainer(model=model, args=args, train_dataset=ds, peft_config=lora,
                         callbacks=[metrics_callback(out / "metrics.jsonl")])
    trainer.train()
    _write_facts(out, trainer.args)


def child_ftagent(model: str, out: Path, steps: int) -> None:
    from ftagent.tools.config.train_config import LoraSettings, TrainConfig
    from ftagent.tools.train.recipe import train

    cfg = TrainConfig(model=model, train_file=str(DATA), output_dir=str(out),
                      lora=LoraSettings(r=LORA["r"], alpha=LORA["alpha"], dropout=0.0,
                                        target_modules=LORA["targets"]),
                      learning_rate=LR, lr_scheduler="linear", warmup_ratio=0.0,
                      max_steps=steps, batch_size=8, max_length=1024, save_steps=steps,
                      report_to=[])
    result = train(cfg)
    (out / "facts.json").write_text(json.dumps(result["effective"]))


def _write_facts(out: Path, args) -> None:
    (out / "facts.json").write_text(json.dumps(
        {"bf16": args.bf16, "gradient_checkpointing": args.gradient_checkpointing,
         "padding_free": args.padding_free}))


def measure(rows: list[dict]) -> dict:
    """Real tokens/s over steps 2..N from the metrics rows (TRL counts real tokens)."""
    logs = [r for r in rows if "loss" in r and "num_tokens" in r]
    first, last = logs[0], logs[-1]
    peak = max(r.get("cuda_peak_mb", r["peak_rss_mb"]) for r in logs)
    return {"steps": last["step"], "tokens": last["num_tokens"],
            "tokens_per_s": (last["num_tokens"] - first["num_tokens"])
            / (last["time"] - first["time"]),
            "peak_mb": peak, "final_loss": sum(r["loss"] for r in logs[-3:]) / 3,
            "losses": [round(r["loss"], 4) for r in logs]}


def matmul_ceiling(device: str) -> dict:
    """Sustained GFLOP/s of a large square matmul, fp32 and bf16."""
    import torch

    out = {}
    for name, dtype in (("fp32", torch.float32), ("bf16", torch.bfloat16)):
        a = torch.randn(2048, 2048, dtype=dtype, device=device)
        b = torch.randn(2048, 2048, dtype=dtype, device=device)
        for _ in range(2):
            a @ b
        n, t = 0, time.perf_counter()
        while time.perf_counter() - t < 2.0:
            a @ b
            n += 1
        if device == "cuda":
            torch.cuda.synchronize()
        out[name] = 2 * 2048**3 * n / (time.perf_counter() - t) / 1e9
    return out


def flops_per_token(model: str) -> tuple[float, float]:
    """(FLOPs per real token of the body, FLOPs per loss-carrying token of the head)."""
    from transformers import AutoConfig

    c = AutoConfig.from_pretrained(model)
    head = c.vocab_size * c.hidden_size
    kv = c.hidden_size // c.num_attention_heads * c.num_key_value_heads
    attn = 2 * c.hidden_size * c.hidden_size + 2 * c.hidden_size * kv
    body = c.num_hidden_layers * (attn + 3 * c.hidden_size * c.intermediate_size)
    return 4.0 * body, 4.0 * head


def loss_token_share(model: str) -> float:
    """Share of the data's tokens that carry loss (the answers), with the chat template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    total = answer = 0
    for r in _rows(DATA):
        full = len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=False))
        prompt = len(tok.apply_chat_template(r["messages"][:-1], tokenize=True,
                                             add_generation_prompt=True, return_dict=False))
        total, answer = total + full, answer + full - prompt
    return answer / total


def run_child(setup: str, model: str, steps: int, work: Path) -> dict:
    out = work / setup.replace(" ", "_").replace(",", "")
    out.mkdir(parents=True)
    env = dict(os.environ)
    if setup == "ftagent":
        from ftagent.tools.train.jobs import training_env

        env = training_env()
    cmd = [sys.executable, __file__, "--child", setup, "--model", model,
           "--steps", str(steps), "--out", str(out)]
    started = time.time()
    r = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    if r.returncode != 0:
        raise SystemExit(f"{setup} failed:\n{r.stderr[-3000:]}")
    from ftagent.tools.train.metrics import read_metrics

    res = measure(read_metrics(out))
    res["wall_s"] = time.time() - started
    res["facts"] = json.loads((out / "facts.json").read_text())
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=12, help="optimizer steps per set-up")
    ap.add_argument("--model", default=None, help="model folder (default: bundled SmolLM2)")
    ap.add_argument("--no-fp32", action="store_true", help="skip the fp32 quick-start")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--out", type=Path, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.child:
        if a.child == "ftagent":
            child_ftagent(a.model, a.out, a.steps)
        else:
            child_trl(a.model, a.out, a.steps, fp32=a.child.endswith("fp32"))
        return
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    model = a.model
    if model is None:
        from ftagent.tools.models import resolve_model

        model = str(resolve_model("smollm2-135m-instruct").path)
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    setups = [s for s in SETUPS if not (a.no_fp32 and s.endswith("fp32"))]
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for setup in setups:
            print(f"running {setup} ({a.steps} steps)...", flush=True)
            results[setup] = run_child(setup, model, a.steps, Path(tmp))
    ceiling = matmul_ceiling(device)
    body, head = flops_per_token(model)
    share = loss_token_share(model)
    base = results["TRL quick-start"]
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"LoRA training throughput, {Path(model).name}, {a.steps} steps of 8 "
                  f"examples, {device}, {torch.get_num_threads()} threads")
    for col in ("set-up", "real tok/s", "vs quick-start", "peak MB", "final loss",
                "loss vs quick-start", "model GFLOP/s", "of bf16 peak", "of fp32 peak"):
        table.add_column(col, justify="left" if col == "set-up" else "right")
    for setup, r in results.items():
        gflops = r["tokens_per_s"] * (body + head * share) / 1e9
        r.update(gflops=gflops, ratio=r["tokens_per_s"] / base["tokens_per_s"],
                 loss_delta=r["final_loss"] / base["final_loss"] - 1)
        table.add_row(setup, f"{r['tokens_per_s']:.1f}", f"{r['ratio']:.2f}x",
                      f"{r['peak_mb']:.0f}", f"{r['final_loss']:.4f}",
                      f"{100 * r['loss_delta']:+.2f}%", f"{gflops:.1f}",
                      f"{gflops / ceiling['bf16']:.0%}", f"{gflops / ceiling['fp32']:.0%}")
    Console(width=160).print(table)
    print(f"matmul ceiling (2048x2048): fp32 {ceiling['fp32']:.0f} GFLOP/s, "
          f"bf16 {ceiling['bf16']:.0f} GFLOP/s; {share:.0%} of tokens carry loss")
    for setup, r in results.items():
        print(f"{setup}: {r['facts']}; {r['tokens']:.0f} real tokens; wall {r['wall_s']:.0f} s")
    if a.json:
        a.json.write_text(json.dumps({"ceiling": ceiling, "results": results}, indent=2))


if __name__ == "__main__":
    main()
