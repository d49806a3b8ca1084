"""Rebuild the demo data bundled in tools/bundled/demo/ from the shared public slice.

    python -m tools.bundled.make_bundled ../shared/data

The probes and the safety mix's public sources are rebuilt by make_probes.py.

Deterministic: the same inputs give byte-identical files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

# Ten distinct, everyday support intents out of BANKING77's 77.
DEMO_INTENTS = [
    "card_arrival",
    "lost_or_stolen_card",
    "exchange_rate",
    "pin_blocked",
    "age_limit",
    "cash_withdrawal_charge",
    "apple_pay_or_google_pay",
    "terminate_account",
    "change_pin",
    "request_refund",
]
SYSTEM_PROMPT = (
    "You are the support assistant of an online bank. Reply with the intent of the "
    "customer's message, one of: " + ", ".join(DEMO_INTENTS) + "."
)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def build_demo(shared: Path, out: Path) -> int:
    rows = read_jsonl(shared / "banking77" / "train.jsonl") + read_jsonl(
        shared / "banking77" / "dev.jsonl"
    )
    demo = [
        {
            "messages": [
                {"role": "system", "content": SYSTEM_PROMPT},
                {"role": "user", "content": r["text"].strip()},
                {"role": "assistant", "content": r["category"]},
            ]
        }
        for r in rows
        if r["category"] in DEMO_INTENTS
    ]
    write_jsonl(out, demo)
    return len(demo)


if __name__ == "__main__":
    shared = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/data")
    here = Path(__file__).parent
    print("demo rows:", build_demo(shared, here / "demo" / "support_intents.jsonl"))
