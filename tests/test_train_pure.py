"""The trainer's pure helpers (no model): out-of-memory back-off, the loss-spike diagnosis,
overfitting detection and the resume fingerprint's differences."""

from ftagent.tools.evaluate.diagnose import overfitting
from ftagent.tools.train.metrics import summarize
from ftagent.tools.train.oom import backoff, describe
from ftagent.tools.train.resume import differences
from ftagent.tools.train.sanity import diagnose


def test_oom_backoff_halves_the_micro_batch_keeping_examples_per_step():
    """Each back-off halves batch_size, doubles grad_accum (same product), turns gradient
    checkpointing on, and gives up at micro-batch 1 with checkpointing already on."""
    now = {"batch_size": 8, "grad_accum": 2, "gradient_checkpointing": False}
    seen = []
    while (nxt := backoff(**now)) is not None:
        assert nxt["batch_size"] * nxt["grad_accum"] == 16
        assert nxt["gradient_checkpointing"] is True
        seen.append((nxt["batch_size"], describe(now, nxt)))
        now = nxt
    assert [b for b, _ in seen] == [4, 2, 1]
    assert now == {"batch_size": 1, "grad_accum": 16, "gradient_checkpointing": True}
    first = seen[0][1]
    assert "gradient checkpointing on" in first and "micro-batch 8 -> 4" in first
    assert "accumulation 2 -> 4" in first and "same 16 examples per step" in first
    assert "gradient checkpointing on" not in seen[1][1]  # already on from the first retry


def test_oom_backoff_at_micro_batch_one_only_adds_checkpointing():
    """Micro-batch 1 (or odd) without checkpointing: one last try with it on, then None."""
    nxt = backoff(1, 4, False)
    assert nxt == {"batch_size": 1, "grad_accum": 4, "gradient_checkpointing": True}
    assert describe({"batch_size": 1, "grad_accum": 4, "gradient_checkpointing": False},
                    nxt).endswith("gradient checkpointing on")
    assert backoff(1, 4, True) is None
    assert backoff(3, 1, True) is None  # odd micro-batch: halving would change the product


def rows(*losses):
    return [{"step": i + 1, "loss": x, "grad_norm": 1.0} for i, x in enumerate(losses)]


def test_a_loss_spike_is_flagged():
    """20 steps around 2.0, then 12.0: diverging."""
    base = [2.0 + 0.05 * ((-1) ** i) for i in range(20)]
    assert diagnose(rows(*base)) is None
    problem = diagnose(rows(*base, 12.0))
    assert problem is not None and problem.kind == "loss_spike" and problem.step == 21
    assert "learning_rate" in problem.fix
    assert diagnose(rows(*base, 12.0), spike_factor=8.0) is None  # 6x is under an 8x bar


def test_noise_at_a_low_loss_is_not_a_spike():
    """Median 0.1, one step at 0.5: 5x the median but only 0.4 above it, so not flagged."""
    base = [0.1 + 0.01 * ((-1) ** i) for i in range(20)]
    assert diagnose(rows(*base, 0.5)) is None


def curve(train: list[float], evals: dict[int, float]) -> list[dict]:
    out = [{"event": "log", "step": i + 1, "loss": x} for i, x in enumerate(train)]
    out += [{"event": "eval", "step": s, "eval_loss": v} for s, v in evals.items()]
    return sorted(out, key=lambda r: r["step"])


def test_validation_rising_while_train_falls_is_overfitting():
    """The summary lists the overfitting anomaly with the best and last evaluation."""
    train = [2.0 - 0.05 * i for i in range(30)]
    rising = curve(train, {10: 1.5, 20: 1.3, 30: 1.6})
    over = overfitting(rising)
    assert over is not None and over["kind"] == "overfitting" and over["step"] == 30
    assert "1.3000 (step 20)" in over["message"] and "1.6000 (step 30)" in over["message"]
    summary = summarize(rising)
    assert [a["kind"] for a in summary["anomalies"]] == ["overfitting"]
    assert summary["best_eval_loss"] == 1.3 and summary["best_eval_step"] == 20
    assert summary["final_eval_loss"] == 1.6
    assert abs(summary["final_train_loss"] - sum(train[-5:]) / 5) < 1e-12


def test_a_healthy_curve_is_not_overfitting():
    """Validation falling with train, or rising within 5%, or rising while train rises too
    (a diverging run, not memorisation): nothing flagged."""
    train = [2.0 - 0.05 * i for i in range(30)]
    assert overfitting(curve(train, {10: 1.5, 20: 1.3, 30: 1.2})) is None
    assert overfitting(curve(train, {10: 1.5, 20: 1.3, 30: 1.33})) is None
    assert overfitting(curve(train[::-1], {10: 1.5, 20: 1.3, 30: 1.6})) is None
    assert overfitting(curve(train, {30: 1.2})) is None  # one evaluation is no trend
    assert summarize(curve(train, {10: 1.5, 20: 1.3, 30: 1.2}))["anomalies"] == []


def test_fingerprint_differences_name_nested_fields_with_dotted_paths():
    """Equal fingerprints differ in nothing; nested changes, added and removed keys are
    named with their dotted path and both values."""
    saved = {"seed": 42, "adapter": {"r": 16, "alpha": 32, "targets": {"q": True}},
             "train_sha256": "a" * 64, "old": 1}
    assert differences(saved, saved) == []
    now = {"seed": 42, "adapter": {"r": 8, "alpha": 32, "targets": {"q": False}},
           "train_sha256": "b" * 64, "new": 2}
    found = differences(saved, now)
    assert "adapter.r: checkpoint has 16, this config has 8" in found
    assert "adapter.targets.q: checkpoint has true, this config has false" in found
    assert "old: checkpoint has 1, this config has null" in found
    assert "new: checkpoint has null, this config has 2" in found
    sha = next(d for d in found if d.startswith("train_sha256:"))
    assert '"' + "a" * 23 + "..." in sha and '"' + "b" * 23 + "..." in sha  # shortened
    assert len(found) == 5


def test_long_values_with_a_common_start_still_read_differently():
    """Model paths and module lists share long prefixes: the shortened values show where
    they differ, not the same first characters twice."""
    path = "/home/someone/models/qwen2.5-0.5b-instruct-finetuned"
    (line,) = differences({"model": path}, {"model": path.replace("0.5b", "1.5b")})
    assert "0.5b" in line and "1.5b" in line
    four = ["k_proj", "o_proj", "q_proj", "v_proj"]
    (line,) = differences({"adapter": {"target_modules": four}},
                          {"adapter": {"target_modules": sorted([*four, "up_proj"])}})
    assert line.startswith("adapter.target_modules:") and "up_proj" in line
    has, _, config_has = line.partition(", this config has ")
    assert has.removeprefix("adapter.target_modules: checkpoint has ") != config_has


def test_a_resumed_run_is_summarised_without_the_steps_it_redid():
    """Rows the killed process logged after the checkpoint the run resumed from (its second
    `begin` row) are superseded: the final train loss is over steps 8-12 as they stand,
    and a data warning logged by both processes is listed once."""
    warn = {"event": "warning", "message": "2 of 30 training examples have no token"}
    rows = [{"event": "begin", "step": 0}, warn]
    rows += [{"event": "log", "step": s, "loss": 10.0 + s} for s in range(1, 11)]
    rows += [{"event": "begin", "step": 8}, warn]
    rows += [{"event": "log", "step": s, "loss": 1.0} for s in range(9, 13)]
    summary = summarize(rows)
    assert summary["final_train_loss"] == (18.0 + 4 * 1.0) / 5
    assert summary["warnings"] == [warn["message"]]


def test_the_summary_says_how_many_tokens_shared_prefixes_saved():
    """The last logged counts reach the result and the gate's text; a run that shared
    nothing says nothing about it."""
    from ftagent.tools.train.summary import training_summary

    rows = [{"event": "log", "step": s, "loss": 1.0, "num_tokens": 1000.0 * s,
             "tokens_saved_by_sharing": 600.0 * s} for s in (1, 2, 3)]
    summary = summarize(rows)
    assert summary["tokens"] == 3000 and summary["tokens_saved_by_sharing"] == 1800
    result = {"global_step": 3, "wall_s": 9.0, "train_loss": 1.0, **summary}
    assert "1,800 of 3,000 tokens (60%)" in training_summary(result)
    plain = summarize([{k: v for k, v in r.items() if k != "tokens_saved_by_sharing"}
                       for r in rows])
    assert plain["tokens_saved_by_sharing"] == 0
    assert "shared prefixes" not in training_summary({**result, **plain})
