"""Build bench_banking77.jsonl: BANKING77-shaped chat rows for the training-throughput bench.

    .venv/bin/python evals/bench/data/make_bench_banking77.py [SHARED_BANKING77_DIR]

Every row carries the same long system prompt (all 77 intent labels, ~560 tokens with
SmolLM2's tokenizer), a short customer message and a one-label answer: the shape where
rows of a batch share most of their tokens, which the chat set does not have. The system
prompt is `tools.data.schema.label_prompt` over the sorted labels, the wording ftagent's
own data preparation gives text/label rows, so the bench trains what a user would.

Selection (deterministic, every intent covered): the shared slice's rows grouped by
intent in file order, then taken round-robin over the intents in categories.json order
(the 1st row of each intent, then the 2nd, ...) until 320 rows: 4 per intent, a 5th for
the first 12 intents. Rows are written in that order; byte-identical on every run.
"""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
# The workplace's shared folder sits beside the checkout (as evals/workflows/datasets.py).
SHARED = HERE.parents[3] / "shared" / "data" / "banking77"
OUT = HERE / "bench_banking77.jsonl"
N_ROWS = 320


def build(src: Path = SHARED, n: int = N_ROWS) -> list[dict]:
    from ftagent.tools.data.schema import label_prompt

    labels = json.loads((src / "categories.json").read_text(encoding="utf-8"))
    rows = [json.loads(x) for x in (src / "train.jsonl").read_text(encoding="utf-8").splitlines()
            if x.strip()]
    by: dict[str, list[dict]] = {label: [] for label in labels}
    for r in rows:
        by[r["category"]].append(r)
    system = label_prompt(sorted(labels))
    picked: list[dict] = []
    k = 0
    while len(picked) < n:
        for label in labels:
            if k < len(by[label]) and len(picked) < n:
                picked.append(by[label][k])
        k += 1
    return [{"messages": [{"role": "system", "content": system},
                          {"role": "user", "content": r["text"]},
                          {"role": "assistant", "content": r["category"]}]} for r in picked]


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else SHARED
    rows = build(src)
    OUT.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                   encoding="utf-8")
    intents = len({r["messages"][-1]["content"] for r in rows})
    sha = hashlib.sha256(OUT.read_bytes()).hexdigest()
    print(f"{OUT}: {len(rows)} rows, {intents} intents, sha256 {sha}")


if __name__ == "__main__":
    main()
