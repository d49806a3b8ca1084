"""The one place a run is judged: is it overfitting, underfitting, flat, forgetting, and
what to change? Pure rules over the evidence a run leaves (the training curves, base vs
tuned scores, the data's shape), with one set of thresholds that the tester, the training
summary (`tools.train.metrics.summarize`) and the chat's run diagnosis
(`agent.chat.run_diagnosis`) all read.

Each tester rule names the evidence it read and proposes config changes (the workflow
retrains with them) or a data change (a person acts on it: the workflow cannot invent
data).
"""

from __future__ import annotations

from pydantic import BaseModel, Field

# --- thresholds ---------------------------------------------------------------------------
OVERFIT_RISE = 0.05  # validation loss this much (relative) above its best, train still falling
STILL_FALLING = 0.03  # the last fifth of the train losses still 3%+ lower: more training helps
BARELY_MOVED = 0.7  # held-out loss still above 70% of the base's: the model barely learned
FLAT_DROP = 0.05  # the train loss under 5% lower from the first to the last steps: flat
FORGETTING_POINTS = 2.0  # ARC-Easy points the tuned model may lose before it is flagged
PER_LABEL = 20  # fewer training examples per label than this rarely reach a high accuracy


# --- the training curve ---------------------------------------------------------------------
def overfitting(rows: list[dict], rise: float = OVERFIT_RISE) -> dict | None:
    """Validation loss rising by more than `rise` (relative) from its best while the train
    loss kept falling: the model is memorising. Over metrics.jsonl rows; None when not
    seen."""
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r]
    if len(evals) < 2 or len(train) < 2:
        return None
    best_step, best = min(evals, key=lambda e: e[1])
    last_step, last = evals[-1]
    if last_step == best_step or last <= best * (1 + rise):
        return None

    def train_near(step):
        near = [loss for s, loss in train if abs(s - step) <= max(2, step // 20)]
        return sum(near) / len(near) if near else float("inf")

    if train_near(last_step) >= train_near(best_step):
        return None
    return {"kind": "overfitting", "step": last_step,
            "message": f"validation loss rose from {best:.4f} (step {best_step}) to {last:.4f} "
            f"(step {last_step}) while the train loss fell",
            "fix": "keep the best checkpoint (early_stopping_patience > 0), train fewer epochs, "
            "lower the learning rate or the LoRA rank, or add data"}


def still_falling(losses: list[float]) -> tuple[float, float, int] | None:
    """(first, last, steps) of the last fifth of the train losses when the loss still fell
    by more than STILL_FALLING over it: training stopped too early. None otherwise."""
    if len(losses) < 4:
        return None
    tail = losses[-max(2, len(losses) // 5):]
    return (tail[0], tail[-1], len(tail)) if tail[-1] < tail[0] * (1 - STILL_FALLING) else None


def flat(losses: list[float]) -> tuple[float, float, int] | None:
    """(mean of the first k, mean of the last k, k) when the train loss barely moved over
    8+ logged steps; near 0 there is nothing left to fall, so that is never flat."""
    if len(losses) < 8:
        return None
    k = max(2, len(losses) // 5)
    head, tail = _mean(losses[:k]), _mean(losses[-k:])
    return (head, tail, k) if head > 0.05 and tail > head * (1 - FLAT_DROP) else None


# --- the tester's rules ---------------------------------------------------------------------


class Evidence(BaseModel):
    """What the rules read; every field optional, a rule without its evidence stays quiet."""

    train_losses: list[float] = Field(default_factory=list)  # per logged step
    eval_losses: list[float] = Field(default_factory=list)  # per evaluation, in order
    base_loss: float | None = None  # held-out answer loss
    tuned_loss: float | None = None
    primary_metric: str = "exact_match"
    base_primary: float | None = None
    tuned_primary: float | None = None
    unparsable_share: float | None = None  # classification: answers naming no label
    json_compliance: float | None = None  # structured answers that parse and fit
    n_train: int | None = None
    label_counts: dict[str, int] = Field(default_factory=dict)
    num_epochs: float | None = None
    learning_rate: float | None = None
    lora_r: int | None = None
    floors_missed: dict[str, tuple[float, float]] = Field(default_factory=dict)  # (tuned, bar)


class Diagnosis(BaseModel):
    kind: str
    evidence: str
    action: str
    changes: dict = Field(default_factory=dict)  # config overrides for the retrain
    route: str = "config"  # config: retrain with changes | data_prep: needs better data


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _overfitting(e: Evidence) -> Diagnosis | None:
    if len(e.eval_losses) < 2 or len(e.train_losses) < 4:
        return None
    best, last = min(e.eval_losses), e.eval_losses[-1]
    half = len(e.train_losses) // 2
    falling = _mean(e.train_losses[half:]) < _mean(e.train_losses[:half])
    if last <= best * (1 + OVERFIT_RISE) or not falling:
        return None
    epochs = max(1.0, round((e.num_epochs or 2) / 2, 1))
    return Diagnosis(
        kind="overfitting",
        evidence=f"validation loss rose from its best {best:.4f} to {last:.4f} while the "
        "train loss kept falling",
        action=f"train {epochs:g} epochs, keep the best checkpoint (early stopping) and add "
        "LoRA dropout 0.1",
        changes={"num_epochs": epochs, "early_stopping_patience": 2, "lora.dropout": 0.1},
    )


def _val_turned(e: Evidence) -> bool:
    """The validation loss passed its best before the last evaluation: longer training
    only memorises. On self_instruct (175 rows) the best was at step 56 of 84; doubling
    the epochs and the learning rate for a held-out loss that 'barely moved' then took it
    from 2.58 to 3.10 and cost 6 ARC points."""
    return len(e.eval_losses) >= 2 and min(e.eval_losses) < e.eval_losses[-1]


def _underfitting(e: Evidence) -> Diagnosis | None:
    if e.base_loss is None or e.tuned_loss is None or len(e.train_losses) < 4:
        return None
    if _val_turned(e):
        return None
    falling = still_falling(e.train_losses)
    barely_moved = e.tuned_loss > BARELY_MOVED * e.base_loss
    if not (falling or barely_moved):
        return None
    epochs = round((e.num_epochs or 1) * 2, 1)
    changes: dict = {"num_epochs": epochs}
    action = f"train longer ({epochs:g} epochs)"
    if barely_moved and e.learning_rate:
        changes["learning_rate"] = min(e.learning_rate * 2, 2e-3)
        action += f" at learning rate {changes['learning_rate']:g}"
    why = []
    if barely_moved:
        why.append(f"held-out loss only fell from {e.base_loss:.3f} to {e.tuned_loss:.3f}")
    if falling:
        first, last, steps = falling
        why.append(f"the train loss was still falling at the end ({first:.3f} -> "
                   f"{last:.3f} over the last {steps} steps)")
    return Diagnosis(kind="underfitting", evidence="; ".join(why), action=action,
                     changes=changes)


def _format_errors(e: Evidence) -> Diagnosis | None:
    if e.unparsable_share is not None and e.unparsable_share > 0.2:
        return Diagnosis(
            kind="format_errors",
            evidence=f"{e.unparsable_share:.0%} of the tuned model's answers name no label",
            action="train longer so answers take the label form; check that every training "
            "answer is exactly one label",
            changes={"num_epochs": round((e.num_epochs or 1) * 1.5, 1)},
        )
    if e.json_compliance is not None and e.json_compliance < 0.8:
        return Diagnosis(
            kind="format_errors",
            evidence=f"only {e.json_compliance:.0%} of answers are valid JSON of the schema",
            action="train longer, and make sure training answers are JSON only (no prose)",
            changes={"num_epochs": round((e.num_epochs or 1) * 1.5, 1)},
        )
    return None


def _template_mismatch(e: Evidence) -> Diagnosis | None:
    """Low held-out loss but poor generations: the model learned the answers, yet what it
    generates is not scored as them: the prompt at generation differs from training (chat
    template, system prompt) or it does not stop (EOS)."""
    if None in (e.tuned_loss, e.base_loss, e.tuned_primary, e.base_primary):
        return None
    learned = e.tuned_loss < 0.35 * e.base_loss and e.tuned_loss < 0.5
    if learned and e.tuned_primary - e.base_primary < 0.05:
        return Diagnosis(
            kind="template_mismatch",
            evidence=f"held-out loss fell to {e.tuned_loss:.3f} (base {e.base_loss:.3f}) but "
            f"{e.primary_metric} only moved {e.base_primary:.3f} -> {e.tuned_primary:.3f}",
            action="compare the samples with the references: a different chat template or "
            "system prompt at generation, or answers that do not stop at the end-of-turn token",
            route="data_prep",
        )
    return None


def _too_little_data(e: Evidence) -> Diagnosis | None:
    need = 200 if e.label_counts else 100
    if e.n_train is None or e.n_train >= need:
        return None
    return Diagnosis(
        kind="too_little_data",
        evidence=f"{e.n_train} training examples (fewer than {need})",
        action=f"add examples (at least {need}; a few per label is not enough), or use a "
        "few-shot prompt instead of fine-tuning",
        route="data_prep",
    )


def _imbalanced(e: Evidence) -> Diagnosis | None:
    if len(e.label_counts) < 2:
        return None
    most, least = max(e.label_counts.values()), min(e.label_counts.values())
    if least > 0 and most / least <= 10:
        return None
    rare = min(e.label_counts, key=e.label_counts.get)
    return Diagnosis(
        kind="imbalanced",
        evidence=f"label counts range from {least} ('{rare}') to {most}",
        action="add examples of the rare labels or down-sample the common ones",
        route="data_prep",
    )


MAX_EPOCHS, MAX_RANK = 10.0, 64


def _below_floor(e: Evidence) -> Diagnosis | None:
    """An absolute target missed: more epochs and more adapter capacity for the retrain,
    and, when each label has few examples, more data (which only a person can add)."""
    if not e.floors_missed:
        return None
    name, (tuned, bar) = next(iter(e.floors_missed.items()))
    why = [f"{name} {tuned:.3f} is below its floor {bar:g}"]
    labels = len(e.label_counts)
    per_label = (e.n_train or 0) / labels if labels else None
    if labels:
        why.append(f"{labels} labels with about {per_label:.0f} training examples each")
    if _val_turned(e):  # more passes only memorise: capacity, and keep the best checkpoint
        changes: dict = {"early_stopping_patience": 2}
        action = "keep the best checkpoint"
    else:
        changes = {"num_epochs": min(round((e.num_epochs or 1) * 2, 1), MAX_EPOCHS)}
        action = f"train {changes['num_epochs']:g} epochs"
    if e.lora_r and e.lora_r < MAX_RANK:
        changes["lora.r"] = min(e.lora_r * 2, MAX_RANK)
        changes["lora.alpha"] = changes["lora.r"] * 2
        action += f" with more adapter capacity (rank {changes['lora.r']})"
    if per_label is not None and per_label < PER_LABEL:
        action += (f"; with under {PER_LABEL} examples per label, more data is the surer fix "
                   "(edit the evaluation gate with data_path=<more data>)")
    return Diagnosis(kind="below_target", evidence="; ".join(why), action=action,
                     changes=changes)


RULES = (_overfitting, _underfitting, _below_floor, _format_errors, _template_mismatch,
         _too_little_data, _imbalanced)


def diagnose(e: Evidence) -> list[Diagnosis]:
    """Every rule that fires, most actionable first (config changes before data)."""
    found = [d for rule in RULES if (d := rule(e)) is not None]
    return sorted(found, key=lambda d: d.route != "config")


def proposed_changes(diagnoses: list[Diagnosis]) -> dict:
    """The config changes of all config-route diagnoses; the first rule wins a conflict
    (overfitting's fewer epochs over underfitting's more)."""
    out: dict = {}
    for d in diagnoses:
        if d.route == "config":
            for k, v in d.changes.items():
                out.setdefault(k, v)
    return out
