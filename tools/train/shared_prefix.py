"""Shared-prefix batches: rows of a micro-batch that start with the same tokens (a system
prompt, tool schemas, a few-shot block) compute those tokens once.

Real fine-tuning data often repeats a long prefix in front of every example while only a
few tokens per row carry loss (BANKING77 with its 77-label system prompt: ~570 shared
tokens, ~6 loss tokens per row). Padding-free batches already drop the padding; this drops
the repeats. A micro-batch becomes one flattened row laid out as

    [prefix][suffix 1][suffix 2]...[suffix k][row without a shared prefix]...

where each suffix keeps the position ids it had in its own row (they continue after the
prefix), attends to the prefix's keys and values and to itself causally (see
`attention.py`), and never to another suffix. The prefix's keys and values depend on the
adapter, so autograd sums the suffixes' gradients through the one prefix: loss and
gradients equal the unshared computation (tests/test_shared_prefix.py).

The prefix is found from the tokens the chat template rendered (no guessing at message
boundaries), and it always ends before the position whose next token is the first to
carry loss: that position's logits are the row's own, so it must sit in the row's suffix.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from ftagent.tools.data.facts import MIN_SHARED_PREFIX, worth_sharing
from ftagent.tools.data.tokens import common_prefix

# Sharing fewer tokens than this saves less than the extra attention call costs; the
# planner's token facts use the same threshold.
MIN_SHARED = MIN_SHARED_PREFIX
# Segment kinds in `shared_prefix_segments` (start, end, kind) rows.
PLAIN, PREFIX, SUFFIX = 0, 1, 2
SEGMENTS_KEY = "shared_prefix_segments"
ROW_TOKENS_KEY = "num_row_tokens"


@dataclass(frozen=True)
class Unit:
    """One example: its token ids and labels (-100 where no loss)."""

    ids: list[int]
    labels: list[int]

    def shareable(self) -> int:
        """How many leading tokens may be shared: up to the token before the one whose
        next token is the first carrying loss."""
        first = next((i for i, x in enumerate(self.labels) if x != -100), len(self.labels))
        return max(0, first - 1)


@dataclass(frozen=True)
class Group:
    """Units that share their first `prefix` tokens (0: a unit on its own)."""

    units: tuple[Unit, ...]
    prefix: int

    @property
    def saved(self) -> int:
        return self.prefix * (len(self.units) - 1)


def group_units(units: Sequence[Unit], min_shared: int = MIN_SHARED) -> list[Group]:
    """Units grouped by shared prefix. Sorting the token rows puts rows with the same
    prefix next to each other; a row joins the current group while that does not lower the
    tokens the group saves (a short common prefix would cut a long one)."""
    order = sorted(units, key=lambda u: u.ids)
    groups: list[Group] = []
    members: list[Unit] = []
    prefix = 0
    for u in order:
        if members:
            shared = common_prefix(members[-1].ids, u.ids, min(prefix, u.shareable()))
            if shared >= min_shared and shared * len(members) >= prefix * (len(members) - 1):
                members.append(u)
                prefix = shared
                continue
            groups.append(Group(tuple(members), prefix if len(members) > 1 else 0))
        members, prefix = [u], u.shareable()
    if members:
        groups.append(Group(tuple(members), prefix if len(members) > 1 else 0))
    return groups


def units_of(example: dict) -> list[Unit]:
    """The examples inside one dataset row: packed rows carry `seq_lengths`."""
    ids, labels = list(example["input_ids"]), list(example.get("labels", example["input_ids"]))
    lengths = example.get("seq_lengths") or [len(ids)]
    out, start = [], 0
    for n in lengths:
        out.append(Unit(ids[start:start + n], labels[start:start + n]))
        start += n
    return out


def layout(groups: Sequence[Group]) -> dict[str, torch.Tensor]:
    """The flattened row: input_ids, labels, position_ids (each (1, tokens)) and the
    segments (start, end, kind) the attention reads."""
    ids: list[int] = []
    labels: list[int] = []
    pos: list[int] = []
    segments: list[tuple[int, int, int]] = []

    def put(tokens, labs, first_pos, kind):
        start = len(ids)
        ids.extend(tokens)
        # The token before a segment belongs to another example (or is the prefix, whose
        # last position never predicts loss): no label crosses a segment boundary.
        labs = list(labs)
        labs[0] = -100
        labels.extend(labs)
        pos.extend(range(first_pos, first_pos + len(tokens)))
        segments.append((start, len(ids), kind))

    for g in groups:
        if g.prefix == 0:
            for u in g.units:
                put(u.ids, u.labels, 0, PLAIN)
            continue
        head = g.units[0]
        put(head.ids[:g.prefix], head.labels[:g.prefix], 0, PREFIX)
        for u in g.units:
            put(u.ids[g.prefix:], u.labels[g.prefix:], g.prefix, SUFFIX)
    as_row = lambda xs: torch.tensor([xs], dtype=torch.long)  # noqa: E731
    return {"input_ids": as_row(ids), "labels": as_row(labels), "position_ids": as_row(pos),
            SEGMENTS_KEY: torch.tensor(segments, dtype=torch.int32)}


class SharedPrefixCollator:
    """Wraps TRL's padding-free collator: batches whose rows share a prefix of at least
    `min_shared` tokens, saving at least MIN_SAVED_SHARE of the batch's tokens, get the
    shared layout; all others TRL's own output unchanged.
    Every batch also says how many tokens its rows hold unshared (`num_row_tokens`), so
    throughput and token counts mean the same with sharing on or off."""

    def __init__(self, base, min_shared: int = MIN_SHARED):
        self.base = base
        self.min_shared = min_shared

    def __call__(self, examples: list[dict]) -> dict:
        units = [u for e in examples for u in units_of(e)]
        row_tokens = sum(len(u.ids) for u in units)
        groups = group_units(units, self.min_shared)
        if not worth_sharing(sum(g.saved for g in groups), row_tokens):
            out = self.base(examples)
        else:
            out = layout(groups)
        out[ROW_TOKENS_KEY] = torch.tensor(row_tokens)
        return out
