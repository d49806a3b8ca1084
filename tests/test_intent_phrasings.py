"""The intent parser on phrasings written apart from its rules (tests/assets/
intent_phrasings.yaml, written by someone who had not read agent/chat/intents.py).

Rows marked `dev` are the ones the rules may be tuned on; `heldout` rows were never looked
at while writing rules: their score is what a new user's phrasing can expect. A question
must never change anything, on either split: that is the safety property, asserted whole.
"""

from pathlib import Path

import pytest
import yaml
from ftagent.agent.chat.intents import CHANGING, parse

ROWS = yaml.safe_load((Path(__file__).parent / "assets" / "intent_phrasings.yaml")
                      .read_text(encoding="utf-8"))


def _same(a, b) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and \
            abs(a - b) <= 1e-12 + 1e-9 * abs(b)
    return a == b


def right(row: dict) -> bool:
    """Did the parser do what the row expects?"""
    intent = parse(row["text"])
    action = intent.action if intent else None
    expect = row["expect"]
    if expect in ("question", "other"):
        return action not in CHANGING
    if action != expect:
        return False
    if expect == "set_config":
        got = intent.args["changes"]
        return set(got) == set(row["changes"]) and all(
            _same(got[k], v) for k, v in row["changes"].items())
    if expect == "reject" and row.get("reason"):
        return row["reason"].lower() in intent.args.get("reason", "").lower()
    for key in ("data_path", "model"):
        if key in row and intent.args.get(key) != row[key]:
            return False
    return True


def score(split: str, label: str | None = None) -> tuple[int, int]:
    rows = [r for r in ROWS if r["split"] == split and (label is None or r["expect"] == label)]
    return sum(right(r) for r in rows), len(rows)


def test_the_table_is_written_apart_and_large():
    assert len(ROWS) >= 200
    assert {r["split"] for r in ROWS} == {"dev", "heldout"}
    held = [r for r in ROWS if r["split"] == "heldout"]
    assert len(held) >= 0.3 * len(ROWS)
    questions = {r["expect"] for r in ROWS} & {"question"}
    assert questions


@pytest.mark.parametrize("split", ["dev", "heldout"])
def test_questions_never_change_anything(split):
    wrong = [r["text"] for r in ROWS
             if r["split"] == split and r["expect"] in ("question", "other") and not right(r)]
    assert wrong == []


def test_dev_rows_are_right():
    wrong = [(r["text"], parse(r["text"])) for r in ROWS if r["split"] == "dev" and not right(r)]
    hits, n = score("dev")
    assert hits / n >= 0.95, wrong


def test_heldout_score_is_reported_and_holds():
    """The held-out score is measured, not tuned: the floor here only catches a collapse."""
    hits, n = score("heldout")
    assert hits / n >= 0.75, f"held-out {hits}/{n}"
