"""Batched vs one-by-one greedy generation on the bundled SmolLM2-135M, in the same run.

.venv/bin/python evals/bench/generation.py [--intents 32] [--free 16] [--max-new-tokens 32]
    [--batch-size 16] [--threads N] [--bf16]

Prompts: the last `--intents` rows of tools/bundled/demo/support_intents.jsonl without their answer
(what the evaluator generates on) plus `--free` free-text prompts from
../shared/data/xstest/prompts.jsonl (long answers; falls back to evals/bench/data). Times
`generate_one_by_one` then `generate`, prints prompts/s, generated tokens/s (up to EOS), the
speed ratio and how many outputs are identical, listing those that differ. Asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from ftagent.tools.evaluate.generation import generate, generate_one_by_one  # noqa: E402

INTENTS = ROOT / "tools" / "bundled" / "demo" / "support_intents.jsonl"
XSTEST = ROOT.parent / "shared" / "data" / "xstest" / "prompts.jsonl"
FALLBACK = ROOT / "evals" / "bench" / "data" / "bench_chat.jsonl"


def load_prompts(n_intents: int, n_free: int) -> list[list[dict]]:
    """Test-like classification prompts plus free-text ones: both answer lengths matter."""
    rows = [json.loads(line) for line in INTENTS.read_text(encoding="utf-8").splitlines()]
    convs = [r["messages"][:-1] for r in rows[-n_intents:]] if n_intents else []
    if XSTEST.exists():
        free = [json.loads(line)["prompt"] for line in XSTEST.read_text().splitlines()]
    else:
        free = [
            json.loads(line)["messages"][0]["content"][:300]
            for line in FALLBACK.read_text().splitlines()
        ]
    step = max(1, len(free) // max(n_free, 1))
    convs += [[{"role": "user", "content": p}] for p in free[::step][:n_free]]
    return convs


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--intents", type=int, default=32)
    ap.add_argument("--free", type=int, default=16)
    ap.add_argument("--max-new-tokens", type=int, default=32)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--threads", type=int, default=0, help="torch threads (0: leave default)")
    ap.add_argument("--bf16", action="store_true", help="bf16 weights (more argmax flips)")
    args = ap.parse_args()

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch
    from ftagent.tools.models import resolve_model
    from rich.console import Console
    from rich.table import Table
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if args.threads:
        torch.set_num_threads(args.threads)
    path = resolve_model("smollm2-135m-instruct").path
    tok = AutoTokenizer.from_pretrained(path)
    dtype = torch.bfloat16 if args.bf16 else torch.float32
    model = AutoModelForCausalLM.from_pretrained(path, dtype=dtype, use_safetensors=True).eval()
    convs = load_prompts(args.intents, args.free)
    generate(model, tok, convs[:2], max_new_tokens=2)  # warm-up: first-call overheads

    runs = {}
    for name, fn, kw in (
        ("one-by-one", generate_one_by_one, {}),
        (f"batched (bs={args.batch_size})", generate, {"batch_size": args.batch_size}),
    ):
        stats: dict = {}
        t0 = time.perf_counter()
        out = fn(model, tok, convs, max_new_tokens=args.max_new_tokens, stats=stats, **kw)
        runs[name] = (out, time.perf_counter() - t0, stats)

    (ref, t_ref, _), (bat, t_bat, _) = runs.values()
    same = [a == b for a, b in zip(ref, bat, strict=True)]
    table = Table(
        title=f"Greedy generation, SmolLM2-135M {str(dtype)[6:]}, {len(convs)} prompts "
        f"({args.intents} intents + {len(convs) - args.intents} free), "
        f"max_new_tokens={args.max_new_tokens}, torch threads={torch.get_num_threads()}"
    )
    for col in ("method", "seconds", "prompts/s", "gen tokens", "gen tokens/s", "pad tokens"):
        table.add_column(col, justify="left" if col == "method" else "right")
    for name, (_, secs, st) in runs.items():
        table.add_row(
            name,
            f"{secs:.2f}",
            f"{len(convs) / secs:.2f}",
            str(st["new_tokens"]),
            f"{st['new_tokens'] / secs:.1f}",
            str(st["padding"]),
        )
    console = Console()
    console.print(table)
    console.print(f"speed ratio (one-by-one / batched): {t_ref / t_bat:.2f}x")
    console.print(f"identical outputs: {sum(same)}/{len(same)}")
    for i, ok in enumerate(same):
        if not ok:
            console.print(f"  differs #{i}: one-by-one={ref[i]!r}\n             batched={bat[i]!r}")


if __name__ == "__main__":
    main()
