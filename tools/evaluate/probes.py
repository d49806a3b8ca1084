"""The bundled probe sets the evaluator sends besides the test split: harmful requests
(AdvBench goals), benign look-alikes (XSTest safe prompts) and general-knowledge questions
(ARC-Easy). What is done with them lives beside this module: `refusal` detects refusals
and counts them, `multiple_choice` scores ARC, `probe_verdicts` judges the numbers.

Bundled probe files live in tools/bundled/probes/ (rebuilt by tools/bundled/make_probes.py,
disjoint from the safety mix's sources).
"""

from __future__ import annotations

import json
from pathlib import Path


def read_probe(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text("utf-8").splitlines() if line]


def load_probes() -> dict[str, list[dict]]:
    """The bundled probe sets: {"arc": rows, "harmful": rows, "safe": rows}. A missing file
    raises tools.bundled.BundledFileMissing, which callers turn into a failed check."""
    from ftagent.tools import bundled

    return {
        "arc": bundled.read_jsonl(bundled.ARC_PROBE),
        "harmful": bundled.read_jsonl(bundled.ADVBENCH_PROBE),
        "safe": bundled.read_jsonl(bundled.XSTEST_SAFE_PROBE),
    }
