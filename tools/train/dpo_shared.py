"""DPO whose chosen and rejected answers compute their shared prompt once.

TRL's DPOTrainer scores a pair as two padded rows, `prompt + chosen` and `prompt +
rejected`, for the policy and again for the reference: every prompt token is computed four
times per step (twice more when pairs share a system prompt). Here a micro-batch whose
rows share enough leading tokens (`worth_sharing`) is also laid out as one flattened row by
`shared_prefix.layout`, the layout SFT uses:

    [prompt][chosen completion][rejected completion][next pair's prompt]...

(pairs whose prompts share a longer prefix, such as a system prompt, share it across pairs
when `group_units` finds it). Chosen and rejected attend to the prompt's keys and values
and causally to themselves, never to each other (`attention.py`), with position ids that
continue after the prompt; the prompt's last token is repeated in each completion's segment,
because its logits predict each completion's first token.

The trainer calls into TRL unchanged: its `_compute_loss` still asks the model for
per-token log-probabilities of the padded rows. The model's forward (TRL's fused LM head)
is wrapped once: when the batch carries the shared layout, the wrapper runs the backbone
and the fused head on the flattened row instead, and scatters every per-token field back
to the padded rows' positions. TRL then sums each sequence's completion log-probs and
computes the loss and metrics from the same numbers an unshared forward gives, for the
policy and for the reference (the same call with the adapter disabled). Loss and gradients
equal the unshared computation (tests/test_dpo_shared.py).

Shared only for the configuration ftagent trains (`supports_sharing`): a LoRA-style adapter
whose reference is the base with the adapter disabled, the sigmoid loss with reverse KL, no
`ld_alpha`, no WPO weighting, no precomputed reference log-probs, no MoE auxiliary loss,
text rows. Anything else (other loss types, prompt or prefix tuning, full fine-tuning with
a separate reference model, ...) runs TRL's own padded path, as do micro-batches whose
shared tokens are not worth the layout. Models with a sliding window or soft-capped
attention logits are supported by the attention path (`attention.py`).
"""

from __future__ import annotations

import dataclasses
import functools

import torch
from ftagent.tools.data.facts import worth_sharing
from ftagent.tools.train.shared_prefix import MIN_SHARED, SEGMENTS_KEY, Unit, group_units, layout

# The batch key holding the flattened row ({input_ids, labels, position_ids, segments,
# index}); TRL passes every batch key it does not know to the model's forward.
LAYOUT_KEY = "shared_prefix_layout"
# Flattened-row positions of each padded row's scored tokens (see `_score_index`).
INDEX_KEY = "padded_index"


class SharedPreferenceCollator:
    """Wraps TRL's DataCollatorForPreference: its padded batch, plus the shared layout of
    the same rows (as TRL truncated them) when sharing saves enough of their tokens."""

    def __init__(self, base, min_shared: int = MIN_SHARED):
        self.base = base
        self.min_shared = min_shared

    def __call__(self, examples: list[dict]) -> dict:
        out = self.base(examples)
        ids, real, scored = out["input_ids"], out["attention_mask"], out["completion_mask"]
        units = []
        for r in range(ids.shape[0]):
            row = ids[r][real[r].bool()].tolist()  # right-padded: the row's real tokens
            marks = scored[r, :len(row)].tolist()
            units.append(Unit(row, [t if m else -100 for t, m in zip(row, marks, strict=True)]))
        groups = group_units(units, self.min_shared)
        if worth_sharing(sum(g.saved for g in groups), sum(len(u.ids) for u in units)):
            flat = layout(groups)
            flat[INDEX_KEY] = _score_index(groups, units, scored)
            out[LAYOUT_KEY] = flat
        return out


def _score_index(groups, units: list[Unit], scored: torch.Tensor) -> torch.Tensor:
    """For every padded position TRL scores (row r, column t - 1 predicts token t where
    `completion_mask[r, t]`), in row-major order: the flattened-row position that predicts
    the same token. A completion never starts inside a shared prefix (`Unit.shareable`),
    so that position lies in the row's own segment."""
    row_of = {id(u): r for r, u in enumerate(units)}
    base = [0] * len(units)  # flattened position of column 0 (of the row's segment)
    cursor = 0
    for g in groups:
        if g.prefix == 0:
            for u in g.units:
                base[row_of[id(u)]] = cursor
                cursor += len(u.ids)
            continue
        cursor += g.prefix
        for u in g.units:
            base[row_of[id(u)]] = cursor - g.prefix  # column p sits at the segment start
            cursor += len(u.ids) - g.prefix
    shift = scored[:, 1:].bool()
    rows, cols = shift.nonzero(as_tuple=True)  # row-major, as masked_scatter fills
    return torch.tensor(base, dtype=torch.long)[rows] + cols  # predicts column cols + 1


def _per_token_fields(output) -> list[str]:
    return [f.name for f in dataclasses.fields(output)
            if f.name not in ("loss", "aux_loss", "label_mask")]


def shared_forward(fused_forward):
    """The model's forward with TRL's fused LM head, taught to run a batch's shared layout:
    called with padded rows, `fused_lm_head=True` and the layout, it computes the flattened
    row and returns the per-token fields at the padded rows' positions (zero where the
    label is -100, as TRL's own head does). Without the layout: the forward unchanged."""

    @functools.wraps(fused_forward)
    def forward(*args, **kwargs):
        flat = kwargs.pop(LAYOUT_KEY, None)
        if flat is None or not kwargs.get("fused_lm_head"):
            return fused_forward(*args, **kwargs)
        labels = kwargs.pop("labels")
        for name in ("input_ids", "attention_mask", "position_ids"):
            kwargs.pop(name, None)
        out = fused_forward(input_ids=flat["input_ids"], position_ids=flat["position_ids"],
                            labels=flat["labels"], **{SEGMENTS_KEY: flat[SEGMENTS_KEY]},
                            **kwargs)
        mask = labels[:, 1:] != -100
        index = flat[INDEX_KEY]

        def padded(x):
            if x is None:
                return None
            return x.new_zeros(mask.shape).masked_scatter(mask, x[0, index])

        fields = {name: padded(getattr(out, name)) for name in _per_token_fields(out)}
        return dataclasses.replace(out, label_mask=mask, **fields)

    return forward


def supports_sharing(trainer) -> tuple[bool, str]:
    """(whether the trainer's configuration runs shared-prefix batches, why not)."""
    from accelerate.utils import is_peft_model
    from peft import PeftConfig

    if not is_peft_model(trainer.model) or trainer.ref_model is not None:
        return False, "the reference is not the base with the adapter disabled"
    config = trainer.accelerator.unwrap_model(trainer.model).peft_config
    if any(isinstance(c, PeftConfig) and c.is_prompt_learning for c in config.values()):
        return False, "prompt-learning PEFT methods put virtual tokens in front of every row"
    if list(trainer.loss_types) != ["sigmoid"] or trainer.f_divergence_type != "reverse_kl":
        return False, "only the sigmoid loss with reverse KL"
    if trainer.ld_alpha is not None or trainer.use_weighting:
        return False, "ld_alpha and WPO weighting"
    if trainer.precompute_ref_logps:
        return False, "precomputed reference log-probs"
    if trainer.aux_loss_enabled:
        return False, "an MoE auxiliary loss counts every computed token"
    if trainer._is_vision_dataset:
        return False, "vision rows"
    return True, ""


def shared_dpo_trainer_class():
    """DPOTrainer computing each micro-batch's shared prompts once, where supported
    (`supports_sharing`; TRL's own path otherwise)."""
    from accelerate.utils import is_peft_model
    from trl import DPOTrainer

    class SharedPrefixDPOTrainer(DPOTrainer):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self.shares_prefix, self.not_shared_because = supports_sharing(self)
            self._shared_tokens = 0
            if not self.shares_prefix:
                return
            base = self.model.get_base_model() if is_peft_model(self.model) else self.model
            base.forward = shared_forward(base.forward)  # TRL's fused head, wrapped
            self.data_collator = SharedPreferenceCollator(self.data_collator)

        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            flat = inputs.get(LAYOUT_KEY)
            if self.model.training:
                fed = inputs["attention_mask"].sum() if flat is None else \
                    torch.tensor(flat["input_ids"].shape[1], device=inputs["input_ids"].device)
                saved = self.accelerator.gather_for_metrics(inputs["attention_mask"].sum() - fed)
                self._shared_tokens += int(saved.sum().item())
                if self.shares_prefix:
                    self._metrics["train"]["tokens_saved_by_sharing"] = [self._shared_tokens]
            return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)

    return SharedPrefixDPOTrainer
