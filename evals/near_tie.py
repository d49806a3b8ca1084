"""How far an export's rounding moves the gap between transformers' top two logits: the
measurement behind the parity check's near-tie margins (`llama_parity.NEAR_TIE_MARGIN`).

    .venv/bin/python -m evals.near_tie [--model DIR] [--data FILE ...] [--prompts 10]

The model (default: the bundled SmolLM2-135M-Instruct) is exported to f16 and q8_0 with
llama.cpp's converter; along transformers' greedy answer (float32) to each prompt, llama.cpp
is teacher-forced on the same tokens, and at every position the gap between transformers'
top two tokens is compared in both runtimes. Where llama.cpp's greedy answer parts from
transformers', the margin at that token is printed too. Prompts: the bundled demo's held-out
messages, plus the first user turns of any --data JSONL files (any schema `ftagent data`
detects).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "tools" / "bundled" / "demo" / "support_intents.jsonl"


def prompts_from(path: Path, n: int) -> list[list[dict]]:
    """The first `n` conversations of a file, cut before their first assistant turn."""
    from ftagent.tools.data.schema import convert, detect_schema

    rows = [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()[:200]
            if line.strip()]
    schema, _ = detect_schema(rows)
    out = []
    for row in rows:
        ex = convert(row, schema)[0]
        msgs = ex.get("messages") or ex.get("prompt") or []
        head = []
        for m in msgs:
            if m["role"] == "assistant":
                break
            head.append(m)
        if head and head[-1]["role"] == "user":
            out.append(head)
        if len(out) >= n:
            break
    return out


def measure(model_dir: Path, gguf: Path, convs: list[list[dict]], max_tokens: int) -> dict:
    import numpy as np
    import torch
    from ftagent.tools.deploy.llama_parity import (
        hf_greedy,
        llama_greedy,
        llama_logits,
        load_llama,
    )
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32).eval()
    eos = model.generation_config.eos_token_id
    eos_ids = set(eos if isinstance(eos, list) else [eos])
    llm = load_llama(gguf, n_ctx=2048)
    shifts, partings = [], []
    try:
        for conv in convs:
            ids = tok.apply_chat_template(conv, add_generation_prompt=True, tokenize=True,
                                          return_dict=False)
            hf = hf_greedy(model, ids, eos_ids, max_tokens)
            path = ids + hf["tokens"][:len(hf["logits"]) - 1]
            ll = llama_logits(llm, path, len(ids))
            for i, row in enumerate(hf["logits"][:len(ll)]):
                a, b = np.argsort(row)[-2:][::-1]
                shifts.append(abs(float(row[a] - row[b]) - float(ll[i][a] - ll[i][b])))
            got = llama_greedy(llm, ids, max_tokens)["tokens"]
            ref = hf["tokens"]
            first = next((i for i, (x, y) in enumerate(zip(ref, got, strict=False)) if x != y),
                         None)
            if first is not None and first < len(hf["logits"]):
                row = hf["logits"][first]
                partings.append({"token": first, "margin": float(row[ref[first]] - row[got[first]]),
                                 "prompt": conv[-1]["content"][:50]})
    finally:
        llm.close()
    s = np.array(shifts)
    return {"positions": len(s), "gap_shift_p50": float(np.median(s)),
            "gap_shift_p99": float(np.quantile(s, 0.99)), "gap_shift_max": float(s.max()),
            "partings": partings}


def main(argv: list[str] | None = None) -> int:
    from ftagent.tools.deploy.gguf import convert_with_llama_cpp
    from ftagent.tools.models import resolve_model

    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--data", type=Path, nargs="*", default=[])
    ap.add_argument("--prompts", type=int, default=10, help="prompts per file")
    ap.add_argument("--max-tokens", type=int, default=48)
    ap.add_argument("--quants", default="f16,q8_0")
    args = ap.parse_args(argv)
    model_dir = args.model or resolve_model("smollm2-135m-instruct").path
    convs = prompts_from(DEMO, args.prompts)
    for f in args.data:
        convs += prompts_from(f, args.prompts)
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        for quant in args.quants.split(","):
            gguf = Path(tmp) / f"model-{quant}.gguf"
            convert_with_llama_cpp(model_dir, gguf, quant)
            results[quant] = r = measure(Path(model_dir), gguf, convs, args.max_tokens)
            print(f"{quant}: {r['positions']} positions, top-two gap moved by median "
                  f"{r['gap_shift_p50']:.3f}, p99 {r['gap_shift_p99']:.3f}, max "
                  f"{r['gap_shift_max']:.3f} logits; {len(r['partings'])} of {len(convs)} "
                  "answers part, at margins "
                  + ", ".join(f"{p['margin']:.3f} (token {p['token']})" for p in r["partings"]),
                  flush=True)
    json.dump(results, sys.stdout, indent=1)
    print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
