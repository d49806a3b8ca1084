"""Early sanity checks while training: stop in the first steps with a diagnosis and a
fix, instead of burning hours on a run that cannot learn.

`diagnose` is pure (the logged rows in, a problem or None out); `SanityCallback` feeds it
from the Trainer's logs and stops training when it finds something."""

from __future__ import annotations

import math

WATCH_STEPS = 50  # "loss exactly 0" and "not moving" are only suspicious early on
FLAT_STEPS = 10  # consecutive identical losses that mean nothing is learning
SPIKE_WINDOW = 20  # steps whose median a spike is measured against


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


def diagnose(rows: list[dict], spike_factor: float = 4.0) -> Problem | None:
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
    window = [r["loss"] for r in losses[-SPIKE_WINDOW - 1:-1]]
    if len(window) >= SPIKE_WINDOW // 2:
        median = sorted(window)[len(window) // 2]
        # Relative and absolute: at low losses a noisy batch can be 4x the median.
        if median > 0 and loss > spike_factor * median and loss - median > 1.0:
            return Problem("loss_spike", step, f"the loss jumped to {loss:.4f}, "
                           f"{loss / median:.1f}x the median of the last {len(window)} steps "
                           f"({median:.4f}): training is diverging.",
                           "lower learning_rate (e.g. 3x), add warm-up (warmup_ratio 0.1) and "
                           "keep max_grad_norm at 1.0; resume from the last checkpoint before "
                           "the spike with the new settings in a new output_dir.")
    recent = [r["loss"] for r in losses[-FLAT_STEPS:]]
    if step <= WATCH_STEPS and len(recent) == FLAT_STEPS and len(set(recent)) == 1:
        return Problem("loss_flat", step, f"the loss has not moved for {FLAT_STEPS} steps "
                       f"({recent[0]:.4f}).",
                       "raise learning_rate, and check that the trainable parameters are "
                       "not frozen.")
    return None


def sanity_callback(on_problem, spike_factor: float = 4.0):
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
            self.problem = diagnose(self.rows, spike_factor)
            if self.problem:
                on_problem(self.problem)
                control.should_training_stop = True
                control.should_save = False

    return SanityCallback()


def masked_rows(dataset, rows_in: int | None = None) -> tuple[int, int]:
    """(rows whose every token is masked from the loss, rows) of a tokenised TRL dataset.
    TRL drops such rows itself after truncation: `rows_in` (the rows before tokenising)
    counts those as masked too."""
    n = len(dataset) if rows_in is None else rows_in
    dropped = n - len(dataset)
    if "labels" in dataset.column_names:
        empty = sum(1 for lab in dataset["labels"] if all(x == -100 for x in lab))
    elif "completion_mask" in dataset.column_names:
        empty = sum(1 for m in dataset["completion_mask"] if not any(m))
    else:
        empty = 0
    return empty + dropped, n
