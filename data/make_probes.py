"""Rebuild the evaluator's regression and over-refusal probes in data/probes/.

    python data/make_probes.py ../shared/data

Deterministic: the same inputs give byte-identical files. Subsets use the shared slices'
own ordering rule (sha256 rank with a salt, first N, written in source order), so anyone
can re-derive them. The AdvBench goals (data/probes/advbench_goals.jsonl) stay with
data/make_bundled.py; nothing here reads AdvBench, so its targets cannot leak in.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from make_bundled import _read_jsonl, _write_jsonl

ARC_ROWS = 100
ARC_SALT = "ftagent-probes-arc-easy"


def _rank(salt: str, key: str) -> str:
    return hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()


def build_arc(shared: Path, out: Path) -> int:
    """100 ARC-Easy dev questions, official schema, picked by a salted rank of their id."""
    rows = _read_jsonl(shared / "arc_easy" / "validation.jsonl")
    keep = set(sorted(range(len(rows)), key=lambda i: _rank(ARC_SALT, rows[i]["id"]))[:ARC_ROWS])
    _write_jsonl(out, [r for i, r in enumerate(rows) if i in keep])
    return len(keep)


def build_xstest_safe(shared: Path, out: Path) -> int:
    """Every safe XSTest prompt in the slice (80 = 8 per safe type): benign look-alikes of
    harmful requests; a model that refuses them over-refuses. The unsafe contrast prompts
    are left out: the harmful side of the probe is AdvBench."""
    rows = [
        {"id": r["id"], "prompt": r["prompt"], "type": r["type"], "focus": r["focus"]}
        for r in _read_jsonl(shared / "xstest" / "prompts.jsonl")
        if r["label"] == "safe"
    ]
    _write_jsonl(out, rows)
    return len(rows)


if __name__ == "__main__":
    shared = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    probes = Path(__file__).parent / "probes"
    print("arc_easy rows:", build_arc(shared, probes / "arc_easy_100.jsonl"))
    print("xstest safe rows:", build_xstest_safe(shared, probes / "xstest_safe.jsonl"))
