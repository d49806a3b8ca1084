"""Preference pairs: hand-checked metrics, and a real evaluation of a DPO-style adapter on
held-out Anthropic HH pairs with a tiny model."""

from pathlib import Path

import pytest
from ftagent.tools.evaluate.preference import (
    PairLogprobs,
    implicit_rewards,
    preference_accuracy,
    reward_stats,
)

HH_PAIRS = Path(__file__).resolve().parent / "assets" / "hh_rlhf_harmless_base"  # 80 rows


def test_preference_accuracy_and_implicit_rewards_by_hand():
    base = PairLogprobs(chosen=[-10.0, -8.0, -5.0], rejected=[-9.0, -9.0, -5.0])
    tuned = PairLogprobs(chosen=[-9.0, -9.0, -4.0], rejected=[-11.0, -9.5, -6.0])
    assert preference_accuracy(base) == pytest.approx(1 / 3)  # only pair 2: -8 > -9
    assert preference_accuracy(tuned) == pytest.approx(1.0)
    # (tc - bc) - (tr - br): (1 - (-2)) = 3; (-1 - (-0.5)) = -0.5; (1 - (-1)) = 2
    assert implicit_rewards(base, tuned) == pytest.approx([3.0, -0.5, 2.0])
    acc, margin = reward_stats(base, tuned)
    assert acc == pytest.approx(2 / 3) and margin == pytest.approx(4.5 / 3)


def test_a_model_against_itself_has_zero_rewards(tmp_path, tiny_model):
    """Base and 'tuned' the same weights: every implicit reward is 0, so reward accuracy is
    0 and both preference accuracies equal; the report holds the preference metrics."""
    from ftagent.tools.data import PrepareOptions, prepare_dataset
    from ftagent.tools.evaluate.compare import evaluate

    rows = (HH_PAIRS / "train.jsonl").read_text(encoding="utf-8").splitlines()[:30]
    src = tmp_path / "pairs.jsonl"
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    prepared = prepare_dataset(src, tmp_path / "data",
                               PrepareOptions(model=str(tiny_model), near_dup_threshold=None))
    r = evaluate(tiny_model, tiny_model, prepared.split_paths["test"], tmp_path / "eval",
                 task_type="preference", train_file=prepared.split_paths["train"])
    assert r.primary_metric == "preference_accuracy"
    assert r.base.preference_accuracy == r.tuned.preference_accuracy
    assert 0.0 <= r.base.preference_accuracy <= 1.0
    assert r.tuned.reward_accuracy == 0.0 and r.tuned.reward_margin == pytest.approx(0.0)
    assert r.samples and r.samples[0].reference  # chosen answers as references
    assert "preference_accuracy" in (tmp_path / "eval" / "report.md").read_text()
