"""The pairwise LLM judge: verdict parsing, position swapping, tallying. The HTTP path runs
against ftagent's own OpenAI-compatible server (tests/test_serve_judge.py)."""

import pytest
from ftagent.tools.evaluate.judge import (
    JudgedPair,
    JudgeEndpoint,
    combine,
    judge_messages,
    parse_choice,
    tally,
)


@pytest.mark.parametrize("reply,choice", [
    ("Verdict: A", "A"),
    ("verdict: b", "B"),
    ("Both are fine.\nVerdict: tie", "tie"),
    ("A is shorter but B is right. **Verdict:** B", "B"),
    ("First I thought Verdict: A, but on reflection Verdict: B", "B"),  # the last one counts
    ("I prefer A.", None),  # no verdict line: unparsed, never guessed
    ("", None),
])
def test_parse_choice(reply, choice):
    assert parse_choice(reply) == choice


def test_a_win_needs_both_orders_to_agree():
    # base_first: A=base, B=tuned; tuned_first: A=tuned, B=base.
    assert combine("B", "A") == "tuned"
    assert combine("A", "B") == "base"
    assert combine("A", "A") == "tie"  # always the first position: position bias
    assert combine("B", "B") == "tie"
    assert combine("tie", "A") == "tie"
    assert combine(None, "A") == "tie"


def test_tally_counts_wins_ties_and_inconsistent_orders():
    pairs = [JudgedPair(index=i, base_first=a, tuned_first=b, winner=combine(a, b))
             for i, (a, b) in enumerate([("B", "A"), ("B", "A"), ("A", "B"), ("A", "A"),
                                         ("tie", "tie"), (None, "A")])]
    r = tally("judge-model", pairs)
    assert (r.n, r.tuned_wins, r.base_wins, r.ties) == (6, 2, 1, 3)
    assert r.inconsistent == 1 and r.unparsed == 1
    assert r.win_rate == pytest.approx((2 + 3 / 2) / 6)
    assert "tuned wins 2, base wins 1, ties 3 (1 inconsistent)" in r.summary


def test_judge_prompt_carries_the_conversation_both_answers_and_the_reference():
    msgs = judge_messages([{"role": "user", "content": "I lost my card"}], "base says hi",
                          "card_lost", "card_lost")
    text = msgs[0]["content"]
    assert "user: I lost my card" in text and "## Answer A\nbase says hi" in text
    assert "## Answer B\ncard_lost" in text and "## Reference answer\ncard_lost" in text


def test_endpoint_from_environment(monkeypatch):
    monkeypatch.delenv("FTAGENT_JUDGE_BASE_URL", raising=False)
    assert JudgeEndpoint.from_env() is None
    monkeypatch.setenv("FTAGENT_JUDGE_BASE_URL", "http://127.0.0.1:9/v1")
    monkeypatch.setenv("FTAGENT_JUDGE_MODEL", "judge")
    monkeypatch.setenv("FTAGENT_JUDGE_API_KEY", "k")
    e = JudgeEndpoint.from_env()
    assert (e.base_url, e.model, e.api_key) == ("http://127.0.0.1:9/v1", "judge", "k")


def test_an_unreachable_judge_is_reported_not_raised():
    from ftagent.tools.evaluate.judge import judge_pairs

    # Port 9 (discard) on loopback: nothing listens there, the connection is refused.
    e = JudgeEndpoint(base_url="http://127.0.0.1:9/v1", model="judge", timeout_s=2,
                      max_retries=0)
    r = judge_pairs(e, [[{"role": "user", "content": "hi"}]], ["a"], ["b"])
    assert r.n == 0 and "cannot reach http://127.0.0.1:9/v1" in r.error
    assert r.summary.startswith("LLM judge (judge) failed")
