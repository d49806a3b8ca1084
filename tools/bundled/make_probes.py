"""Rebuild the evaluator's probes and the safety mix's public sources, disjoint by design.

    python -m tools.bundled.make_probes ../shared/data

One script decides both sides of every split, so a prompt the safety gate measures with can
never be one the data step trains on (tests/test_safety_mix.py checks the files too):

- AdvBench goals: the 50 with the smallest salted rank are the harmful-request probe
  (probes/advbench_goals.jsonl); the other 50 of the shared slice go to the mix
  (safety/harmful_prompts.jsonl). Only `goal` is kept: the attack targets ("Sure, here
  is ...") never reach a file here.
- XSTest v2 safe prompts: per safe type, the 4 with the smallest salted rank are the
  over-refusal probe (probes/xstest_safe.jsonl), the other 4 go to the mix's benign
  look-alikes (safety/xstest_safe_mix.jsonl). The unsafe `contrast_*` prompts are harmful
  requests the probe does not use: all go to the mix.
- ARC-Easy: 100 dev questions, the forgetting probe (nothing of it is trained on).

Deterministic: the same inputs give byte-identical files. Subsets use the shared slices'
own ordering rule (sha256 rank with a salt, first N, written in source order).
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path

from ftagent.tools.bundled.make_bundled import read_jsonl, write_jsonl

HERE = Path(__file__).resolve().parent
ARC_ROWS = 100
ARC_SALT = "ftagent-probes-arc-easy"
ADVBENCH_PROBE_ROWS = 50
ADVBENCH_SALT = "ftagent-probes-advbench"
XSTEST_PROBE_PER_TYPE = 4
XSTEST_SALT = "ftagent-probes-xstest"


def _rank(salt: str, key: str | int) -> str:
    return hashlib.sha256(f"{salt}:{key}".encode()).hexdigest()


def build_arc(shared: Path, out: Path) -> int:
    """100 ARC-Easy dev questions, official schema, picked by a salted rank of their id."""
    rows = read_jsonl(shared / "arc_easy" / "validation.jsonl")
    keep = set(sorted(range(len(rows)), key=lambda i: _rank(ARC_SALT, rows[i]["id"]))[:ARC_ROWS])
    write_jsonl(out, [r for i, r in enumerate(rows) if i in keep])
    return len(keep)


def build_advbench(shared: Path, probe_out: Path) -> list[dict]:
    """AdvBench goals split in two: the probe (ranked first 50, written) and the mix's
    harmful prompts (the rest, returned)."""
    goals = [r["goal"] for r in read_jsonl(shared / "advbench" / "harmful_behaviors.jsonl")]
    order = sorted(range(len(goals)), key=lambda i: _rank(ADVBENCH_SALT, i))
    probe = set(order[:ADVBENCH_PROBE_ROWS])
    write_jsonl(probe_out, [{"prompt": g} for i, g in enumerate(goals) if i in probe])
    return [{"prompt": g, "source": "advbench"} for i, g in enumerate(goals) if i not in probe]


def build_xstest(shared: Path, probe_out: Path, safe_mix_out: Path) -> list[dict]:
    """XSTest safe prompts split per type (probe / mix, both written); the unsafe contrast
    prompts are returned for the mix's harmful prompts."""
    rows = read_jsonl(shared / "xstest" / "prompts.jsonl")
    safe = [r for r in rows if r["label"] == "safe"]
    probe_ids: set[str] = set()
    for kind in dict.fromkeys(r["type"] for r in safe):
        of_kind = sorted((r for r in safe if r["type"] == kind),
                         key=lambda r: _rank(XSTEST_SALT, r["id"]))
        probe_ids |= {r["id"] for r in of_kind[:XSTEST_PROBE_PER_TYPE]}

    def slim(r: dict) -> dict:
        return {"id": r["id"], "prompt": r["prompt"], "type": r["type"], "focus": r["focus"]}

    probe = [slim(r) for r in safe if r["id"] in probe_ids]
    mix = [slim(r) | {"source": "xstest"} for r in safe if r["id"] not in probe_ids]
    unsafe = [{"prompt": r["prompt"], "source": "xstest"} for r in rows if r["label"] == "unsafe"]
    write_jsonl(probe_out, probe)
    write_jsonl(safe_mix_out, mix)
    return unsafe


def build_all(shared: Path, root: Path = HERE) -> dict[str, int]:
    probes, safety = root / "probes", root / "safety"
    arc = build_arc(shared, probes / "arc_easy_100.jsonl")
    harmful = build_advbench(shared, probes / "advbench_goals.jsonl")
    harmful += build_xstest(shared, probes / "xstest_safe.jsonl", safety / "xstest_safe_mix.jsonl")
    write_jsonl(safety / "harmful_prompts.jsonl", harmful)
    return {"arc": arc, "harmful_mix": len(harmful)} | {
        str(p.relative_to(root)): len(read_jsonl(p)) for p in (
            probes / "advbench_goals.jsonl", probes / "xstest_safe.jsonl",
            safety / "xstest_safe_mix.jsonl")}


if __name__ == "__main__":
    for name, count in build_all(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
                                 ).items():
        print(f"{name}: {count} rows")
