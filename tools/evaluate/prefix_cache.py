"""Evaluation rows that start with the same tokens compute them once.

A classifier's system prompt that lists every label (BANKING77: ~570 of ~620 tokens per
row), tool schemas or a few-shot block sit in front of every held-out row and every safety
probe. The tester used to run them again for each row: a default BANKING77 run spent 28 of
its minutes there. Here the shared prefix runs once per model, its keys and values are
copied to each batch, and only the rows' own tokens are computed, the same idea as the
trainer's shared-prefix batches.

Exact up to floating point: each row attends to the same prefix keys and values it would
compute itself, at the same positions (transformers derives positions from the attention
mask, so padding between the prefix and a row's own tokens shifts nothing). Models with a
sliding window are left alone when a row could reach past the window, since a windowed
cache drops the oldest prefix keys.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

from ftagent.tools.data.facts import MIN_SHARED_PREFIX, worth_sharing


@dataclass(slots=True)
class SharedPrefix:
    """The prefix's token ids and its cache for one model (as it is now: an adapter
    switched on or off changes the keys and values, so a cache serves one state)."""

    ids: list[int]
    cache: object  # transformers DynamicCache

    def __len__(self) -> int:
        return len(self.ids)

    def for_batch(self, n: int):
        """A private copy for `n` rows (generation appends to the cache it is given)."""
        cache = copy.deepcopy(self.cache)
        for layer in cache.layers:
            layer.batch_repeat_interleave(n)
        return cache


def common_length(seqs: list[list[int]], cap: int) -> int:
    """Tokens every sequence starts with, at most `cap`."""
    if not seqs:
        return 0
    first = seqs[0]
    n = min(cap, *(len(s) for s in seqs))
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return n


def _window_allows(model, longest: int) -> bool:
    window = getattr(getattr(model, "config", None), "sliding_window", None)
    return not window or longest <= int(window)


def _prompt_learning(model) -> bool:
    """PEFT prompt and prefix tuning put their own virtual tokens (prefix tuning: its own
    past keys and values) in front of every input; a shared cache would collide."""
    return bool(getattr(getattr(model, "active_peft_config", None), "is_prompt_learning",
                        False))


def find_shared_prefix(model, seqs: list[list[int]], cap: int,
                       batch_size: int) -> SharedPrefix | None:
    """Run the prefix every sequence shares once, when that saves enough: at least
    `MIN_SHARED_PREFIX` tokens and the trainer's share of the tokens (`worth_sharing`),
    counting one prefix per batch. `cap` keeps each row's own tokens non-empty (and, for
    scoring, the first answer token's prediction out of the prefix)."""
    import torch

    p = common_length(seqs, cap)
    batches = -(-len(seqs) // max(batch_size, 1))
    total = sum(map(len, seqs))
    if (len(seqs) < 2 or p < MIN_SHARED_PREFIX or not worth_sharing(p * (len(seqs) - batches),
                                                                    total)
            or not _window_allows(model, max(map(len, seqs))) or _prompt_learning(model)):
        return None
    from transformers import DynamicCache

    cache = DynamicCache(config=model.config)
    ids = seqs[0][:p]
    with torch.inference_mode():
        model(input_ids=torch.tensor([ids], device=model.device), past_key_values=cache,
              use_cache=True)
    return SharedPrefix(ids, cache)


def with_prefix(prefix: SharedPrefix, ids, mask):
    """`input_ids` and `attention_mask` of a left-padded batch of the rows' own tokens with
    the prefix put back in front (padding then sits between prefix and row, masked)."""
    import torch

    n = ids.shape[0]
    head = torch.tensor(prefix.ids, dtype=ids.dtype).expand(n, -1)
    return (torch.cat([head, ids], dim=1),
            torch.cat([torch.ones_like(head, dtype=mask.dtype), mask], dim=1))
