"""The SFT loss, computed only where it counts.

TRL 1.16's SFTTrainer scores tokens through a chunked "fused LM head" that also computes
entropy for logging; on CPU that head took ~2/3 of each step in a profile of SmolLM2-135M
(fp32 exp/sub over the vocabulary in Python-level chunks). Here the model projects only the
positions whose next token carries loss (`logits_to_keep`), and the loss is one
`cross_entropy` over those rows: the same value TRL computes (sum over loss tokens divided
by the tokens in the optimizer step), at a fraction of the cost. Models without
`logits_to_keep`, and prompt/prefix tuning (virtual tokens shift the positions), keep TRL's
own loss.
"""

from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F
from ftagent.tools.train.shared_prefix import ROW_TOKENS_KEY


def keeps_logits(model) -> bool:
    """Whether the underlying causal LM takes `logits_to_keep` (most do, Llama to Qwen3)."""
    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    base = getattr(base, "module", base)
    return "logits_to_keep" in inspect.signature(base.forward).parameters


def selective_loss(model, inputs: dict, num_items_in_batch=None):
    """(loss, loss tokens, correct top-1 predictions) of a causal LM batch."""
    labels = inputs["labels"]
    shift = labels[:, 1:]
    mask = shift != -100
    # Positions (along the sequence) whose next token is a label; with several rows the
    # union is projected and the rows' own positions are picked afterwards.
    keep = mask.any(dim=0).nonzero().flatten()
    if keep.numel() == 0:
        keep = torch.zeros(1, dtype=torch.long, device=labels.device)
    model_inputs = {k: v for k, v in inputs.items() if k != "labels"}
    out = model(**model_inputs, use_cache=False, logits_to_keep=keep)
    logits = out.logits  # (batch, len(keep), vocab)
    targets = shift[:, keep]
    picked = targets != -100
    if bool(picked.all()):  # one row (padding-free): every kept position is a loss token
        rows, gold = logits.reshape(-1, logits.shape[-1]).float(), targets.reshape(-1)
    else:
        rows, gold = logits[picked].float(), targets[picked]
    n_tokens = gold.numel()
    loss_sum = F.cross_entropy(rows, gold, reduction="sum")
    denom = num_items_in_batch if num_items_in_batch is not None else max(n_tokens, 1)
    loss = loss_sum / torch.as_tensor(denom, device=loss_sum.device).clamp(min=1)
    with torch.no_grad():
        correct = (rows.argmax(-1) == gold).sum()
    return loss, n_tokens, correct


def fast_sft_trainer_class():
    """SFTTrainer with `selective_loss` in place of the fused LM head (same metrics but
    entropy, which needs the whole distribution)."""
    from trl import SFTTrainer

    class FastSFTTrainer(SFTTrainer):
        def compute_loss(self, model, inputs, return_outputs=False, num_items_in_batch=None):
            # The rows' own token count (shared-prefix batches feed fewer): not a model input.
            row_tokens = inputs.pop(ROW_TOKENS_KEY, None)
            if return_outputs or not getattr(self, "_selective_loss", False):
                return super().compute_loss(model, inputs, return_outputs, num_items_in_batch)
            mode = "train" if self.model.training else "eval"
            loss, n_tokens, correct = selective_loss(model, inputs, num_items_in_batch)
            if self.args.average_tokens_across_devices and num_items_in_batch is not None:
                loss = loss * self.accelerator.num_processes  # DDP averages the gradients
            acc = self.accelerator
            valid = acc.gather_for_metrics(torch.tensor(n_tokens, device=loss.device)).sum()
            right = acc.gather_for_metrics(correct.detach()).sum()
            self._metrics[mode]["mean_token_accuracy"].append(
                (right / valid).item() if valid > 0 else 0.0)
            if mode == "train":
                if "attention_mask" in inputs:
                    local = inputs["attention_mask"].sum()
                else:
                    local = torch.tensor(inputs["input_ids"].size(1), device=loss.device)
                fed = acc.gather_for_metrics(local).sum().item()
                rows = fed if row_tokens is None else \
                    acc.gather_for_metrics(row_tokens.to(loss.device)).sum().item()
                # num_tokens counts the rows' tokens, so tokens/s compares with sharing off.
                self._total_train_tokens += rows
                self._shared_tokens = getattr(self, "_shared_tokens", 0) + rows - fed
                self._metrics[mode]["tokens_saved_by_sharing"] = [self._shared_tokens]
            self._metrics[mode]["num_tokens"] = [self._total_train_tokens]
            return loss

    return FastSFTTrainer
