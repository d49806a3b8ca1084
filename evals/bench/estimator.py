"""The memory estimator against real peak memory of real training runs.

    .venv/bin/python evals/bench/estimator.py [--steps 4]

Runs `python -m ftagent.tools.train` on the bundled SmolLM2-135M with the demo data for a few
steps in several set-ups, reads the peak RSS the run logged (CUDA allocator peak on a
GPU), and prints it next to `tools.plan.estimate.estimate` for the same set-up.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

SETUPS = [  # (name, overrides of the training config)
    ("LoRA fp32, batch 8", {"method": "lora", "bf16": False, "batch_size": 8}),
    ("LoRA bf16, batch 8", {"method": "lora", "bf16": True, "batch_size": 8}),
    ("LoRA bf16, batch 2", {"method": "lora", "bf16": True, "batch_size": 2}),
    (
        "LoRA fp32, batch 16, r 64 all-linear",
        {
            "method": "lora",
            "bf16": False,
            "batch_size": 16,
            "lora.r": 64,
            "lora.target_modules": [
                "q_proj",
                "k_proj",
                "v_proj",
                "o_proj",
                "gate_proj",
                "up_proj",
                "down_proj",
            ],
        },
    ),
    (
        "full bf16, batch 4",
        {"method": "full", "bf16": True, "batch_size": 4, "learning_rate": 2e-5},
    ),
    ("QLoRA nf4, bf16 compute, batch 8", {"method": "qlora", "bf16": True, "batch_size": 8}),
    ("QLoRA nf4, bf16 compute, batch 2", {"method": "qlora", "bf16": True, "batch_size": 2}),
    (
        "LoRA fp32, batch 16, gradient checkpointing",
        {"method": "lora", "bf16": False, "batch_size": 16, "gradient_checkpointing": True},
    ),
]


def token_lengths(path: str, model: Path) -> list[int]:
    """Each training example's length in tokens with the model's chat template."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model)
    rows = [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]
    return [len(tok.apply_chat_template(r["messages"], tokenize=True, return_dict=False))
            for r in rows]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--only", nargs="*", help="set-ups whose name contains one of these")
    args = ap.parse_args()
    from ftagent.tools.config.train_config import apply_overrides, default_config, save_config
    from ftagent.tools.data import PrepareOptions, prepare_dataset
    from ftagent.tools.models import resolve_model
    from ftagent.tools.plan.estimate import estimate, shape_from_config

    model = resolve_model("smollm2-135m-instruct").path
    shape = shape_from_config(json.loads((model / "config.json").read_text()))
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        data = prepare_dataset(
            ROOT / "tools/bundled/demo/support_intents.jsonl",
            Path(tmp) / "data",
            PrepareOptions(model=str(model), near_dup_threshold=None),
        )
        lengths = sorted(token_lengths(data.split_paths["train"], model))
        for name, overrides in SETUPS:
            if args.only and not any(o.lower() in name.lower() for o in args.only):
                continue
            out = Path(tmp) / name.replace(" ", "_").replace(",", "")
            cfg = default_config(
                str(model),
                "lora",
                data.split_paths["train"],
                None,
                str(out),
                data.splits["train"],
                shape.params,
                False,
            )
            cfg = apply_overrides(cfg, {**overrides, "max_steps": args.steps, "save_steps": 1000})
            save_config(cfg, out / "config.yaml")
            subprocess.run(
                [sys.executable, "-m", "ftagent.tools.train", str(out / "config.yaml")],
                cwd=ROOT,
                check=True,
                capture_output=True,
            )
            logged = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
            peak = max(r.get("cuda_peak_mb", r.get("peak_rss_mb", 0)) for r in logged) / 1024
            device = "cuda" if any("cuda_peak_mb" in r for r in logged) else "cpu"
            # A padded batch is as long as its longest row, and the peak is the longest of
            # the batches run: the expected maximum of steps x batch draws.
            q = 1 - 1 / (args.steps * cfg.batch_size + 1)
            seq = lengths[min(len(lengths) - 1, int(q * len(lengths)))]
            est = estimate(
                shape,
                cfg.method,
                "bf16" if cfg.bf16 else "fp32",
                cfg.batch_size,
                seq,
                cfg.lora.r,
                tuple(cfg.lora.target_modules),
                gradient_checkpointing=cfg.gradient_checkpointing,
                device=device,
            )
            err = (est.total_gb - peak) / peak
            rows.append((name, peak, est.total_gb, err))
            print(
                f"{name:44} seq {seq:4}  measured {peak:6.2f} GB  estimated {est.total_gb:6.2f} GB "
                f"error {err:+.0%}",
                flush=True,
            )
    worst = max(abs(r[3]) for r in rows)
    print(f"\nworst error {worst:.0%} over {len(rows)} set-ups (target within 25%)")


if __name__ == "__main__":
    main()
