"""The tester's diagnosis rules on hand-made evidence: each fires on its pattern, stays
quiet on a healthy run, and proposes changes a retrain can apply."""

from ftagent.tools.config.train_config import TrainConfig, apply_overrides
from ftagent.tools.evaluate.diagnose import Evidence, diagnose, proposed_changes

HEALTHY = dict(train_losses=[3.0, 1.5, 0.6, 0.3, 0.2, 0.2, 0.19, 0.2], eval_losses=[0.3, 0.25],
               base_loss=3.1, tuned_loss=0.25, primary_metric="accuracy", base_primary=0.0,
               tuned_primary=0.85, n_train=400, num_epochs=3, learning_rate=2e-4)


def kinds(**changes) -> list[str]:
    return [d.kind for d in diagnose(Evidence(**{**HEALTHY, **changes}))]


def test_a_healthy_run_has_no_diagnosis():
    assert kinds() == []


def test_overfitting_halves_epochs_and_keeps_the_best_checkpoint():
    found = diagnose(Evidence(**{**HEALTHY, "eval_losses": [0.3, 0.25, 0.4]}))
    assert [d.kind for d in found] == ["overfitting"]
    assert found[0].changes == {"num_epochs": 1.5, "early_stopping_patience": 2,
                                "lora.dropout": 0.1}
    assert "0.2500" in found[0].evidence and "0.4000" in found[0].evidence


def test_underfitting_trains_longer_and_hotter_when_loss_barely_moved():
    found = diagnose(Evidence(**{**HEALTHY, "train_losses": [3.0, 2.9, 2.8, 2.7, 2.6],
                                 "tuned_loss": 2.6, "tuned_primary": 0.05}))
    assert [d.kind for d in found] == ["underfitting"]
    assert found[0].changes == {"num_epochs": 6.0, "learning_rate": 4e-4}


def test_format_errors_and_template_mismatch():
    assert "format_errors" in kinds(unparsable_share=0.4, tuned_primary=0.3)
    assert "format_errors" in kinds(json_compliance=0.5)
    # Learned the answers (loss 0.1) yet generations score like the base: a prompt or
    # stopping mismatch between training and generation, not a training problem.
    found = diagnose(Evidence(**{**HEALTHY, "tuned_loss": 0.1, "tuned_primary": 0.02}))
    assert [d.kind for d in found] == ["template_mismatch"] and found[0].route == "data_prep"


def test_data_problems_route_to_data_prep_after_config_changes():
    found = diagnose(Evidence(**{**HEALTHY, "n_train": 60, "eval_losses": [0.3, 0.25, 0.4],
                                 "label_counts": {"a": 50, "b": 3}}))
    assert [d.kind for d in found] == ["overfitting", "too_little_data", "imbalanced"]
    assert [d.route for d in found] == ["config", "data_prep", "data_prep"]


def test_proposed_changes_apply_to_a_real_config():
    found = diagnose(Evidence(**{**HEALTHY, "eval_losses": [0.3, 0.25, 0.4],
                                 "train_losses": [3.0, 2.0, 1.0, 0.5, 0.3, 0.2, 0.1, 0.05]}))
    changes = proposed_changes(found)
    cfg = apply_overrides(TrainConfig(model="m", train_file="t", output_dir="o"), changes)
    assert cfg.num_epochs == 1.5 and cfg.early_stopping_patience == 2
    assert cfg.lora.dropout == 0.1


def test_a_missed_floor_proposes_epochs_capacity_and_says_when_data_is_the_fix():
    labels = {f"intent_{i}": 4 for i in range(77)}
    found = diagnose(Evidence(**{**HEALTHY, "floors_missed": {"accuracy": (0.351, 0.85)},
                                 "label_counts": labels, "n_train": 308, "num_epochs": 1,
                                 "lora_r": 8}))
    below = next(d for d in found if d.kind == "below_target")
    assert "accuracy 0.351 is below its floor 0.85" in below.evidence
    assert "77 labels with about 4 training examples each" in below.evidence
    assert below.changes == {"num_epochs": 2, "lora.r": 16, "lora.alpha": 32}
    assert "more data is the surer fix" in below.action
    assert "below_target" not in kinds()  # no floor missed, no diagnosis


def test_once_the_validation_loss_turned_no_rule_asks_for_more_epochs():
    # self_instruct's first attempt: held-out loss barely moved and a floor was missed, but
    # the validation loss had passed its best (step 56 of 84); more epochs only memorised
    turned = {**HEALTHY, "eval_losses": [2.1, 1.79, 1.80], "tuned_loss": 2.576,
              "base_loss": 2.606, "tuned_primary": 0.16, "lora_r": 8,
              "train_losses": [2.0, 1.8, 1.6, 1.5, 1.4, 1.3, 1.2, 1.1],
              "floors_missed": {"rouge_l": (0.16, 0.3)}}
    found = diagnose(Evidence(**turned))
    assert "underfitting" not in [d.kind for d in found]
    assert "num_epochs" not in proposed_changes(found)
    below = next(d for d in found if d.kind == "below_target")
    assert below.changes == {"early_stopping_patience": 2, "lora.r": 16, "lora.alpha": 32}
    # the same evidence with the validation loss still falling: train longer
    still = diagnose(Evidence(**{**turned, "eval_losses": [2.1, 1.85, 1.79]}))
    assert proposed_changes(still)["num_epochs"] == 6.0
