"""Early sanity checks while training: stop in the first steps with a diagnosis and a
fix, instead of burning hours on a run that cannot learn.

`diagnose` is pure (the logged rows in, a problem or None out); `SanityCallback` feeds it
from the Trainer's logs and stops training when it finds something."""

from __future__ import annotations

import math

WATCH_STEPS = 50  # "loss exactly 0" and "not moving" are only suspicious early on
FLAT_STEPS = 10  # consecutive identical losses that mean nothing is learning


class Problem:
    def __init__(self, kind: str, step: int, message: str, fix: str):
        self.kind, self.step, self.message, self.fix = kind, step, message, fix

    def as_row(self) -> dict:
        return {"event": "anomaly", "kind": self.kind, "step": self.step,
                "message": self.message, "fix": self.fix}

    def __str__(self) -> str:
        return f"step {self.step}: {self.message} Fix: {self.fix}"


def _bad(x) -> bool:
    return isinstance(x, float) and (math.isnan(x) or math.isinf(x))


def diagnose(rows: list[dict]) -> Problem | None:
    """The first problem in the training log rows (dicts with step, loss, grad_norm)."""
    losses = [r for r in rows if "loss" in r]
    if not losses:
        return None
    last = losses[-1]
    step, loss, grad = last["step"], last["loss"], last.get("grad_norm")
    if _bad(loss):
        return Problem("loss_nan", step, f"the training loss is {loss}.",
                       "lower learning_rate, keep max_grad_norm on, and check the data for "
                       "empty answers; with fp16 use bf16 or fp32.")
    if grad is not None and _bad(grad):
        return Problem("grad_inf", step, f"the gradient norm is {grad}: gradients exploded "
                       "or the model computes NaN.",
                       "lower learning_rate (e.g. 10x) and keep max_grad_norm at 1.0; if it "
                       "happens at step 1, check the base model's weights and dtype.")
    if step <= WATCH_STEPS and loss == 0.0:
        return Problem("loss_zero", step, "the loss is exactly 0: no token carries loss, or "
                       "the answers are copied into the prompt.",
                       "check the loss preview in the data report (completion_only_loss and "
                       "the chat template) and look for answers leaking into prompts.")
    if step <= WATCH_STEPS and grad is not None and grad == 0.0:
        return Problem("grad_zero", step, "the gradient norm is 0: nothing is being trained.",
                       "check that the adapter's target_modules exist in this model and that "
                       "some tokens carry loss.")
    recent = [r["loss"] for r in losses[-FLAT_STEPS:]]
    if step <= WATCH_STEPS and len(recent) == FLAT_STEPS and len(set(recent)) == 1:
        return Problem("loss_flat", step, f"the loss has not moved for {FLAT_STEPS} steps "
                       f"({recent[0]:.4f}).",
                       "raise learning_rate, and check that the trainable parameters are "
                       "not frozen.")
    return None


def sanity_callback(on_problem):
    """A TrainerCallback that stops training at the first problem `diagnose` finds and
    hands it to `on_problem`."""
    from transformers import TrainerCallback

    class SanityCallback(TrainerCallback):
        def __init__(self):
            self.rows: list[dict] = []
            self.problem: Problem | None = None

        def on_log(self, args, state, control, logs=None, **kwargs):
            if self.problem or not logs or "loss" not in logs:
                return
            self.rows.append({"step": state.global_step, **logs})
            self.problem = diagnose(self.rows)
            if self.problem:
                on_problem(self.problem)
                control.should_training_stop = True
                control.should_save = False

    return SanityCallback()


def masked_rows(dataset) -> tuple[int, int]:
    """(rows whose every token is masked from the loss, rows) of a tokenised TRL dataset."""
    if "completion_mask" not in dataset.column_names:
        return 0, len(dataset)
    masks = dataset["completion_mask"]
    return sum(1 for m in masks if not any(m)), len(masks)
