"""Splitting into train, val and test so that no prompt (or near-same prompt) lands on
both sides and every label keeps its share in each split: a leaky or skewed test set
would make the evaluation flatter the model."""

from __future__ import annotations

import random
from collections import defaultdict

from ftagent.tools.data import checks as C
from ftagent.tools.data.rows import Item


def split_groups(items: list[Item], threshold: float | None) -> list[int]:
    """A group id per item: the same or near-same prompt shares a group, so such
    examples never straddle train and test."""
    prompts = [C.prompt_text(i.example) for i in items]
    if threshold:
        from ftagent.tools.data.neardup import near_duplicate_groups

        roots = near_duplicate_groups(prompts, threshold=threshold)
    else:
        roots = list(range(len(items)))
    first: dict[str, int] = {}
    return [first.setdefault(p, r) if p.strip() else r for p, r in zip(prompts, roots, strict=True)]


def stratified_group_split(
    items: list[Item], groups: list[int], fractions: dict[str, float], seed: int
) -> dict[str, list[Item]]:
    """Whole groups go to one split; each label (stratum) is split in the same ratios."""
    members: dict[int, list[int]] = defaultdict(list)
    for idx, g in enumerate(groups):
        members[g].append(idx)
    strata: dict[str | None, list[int]] = defaultdict(list)
    for g, idxs in members.items():
        strata[items[idxs[0]].label].append(g)
    rng = random.Random(seed)
    chosen: dict[str, list[int]] = {name: [] for name in ("train", *fractions)}
    seen = 0  # rows of the strata handled so far: targets round cumulatively, so the
    # totals hit the requested fractions even when each stratum is small
    for label in sorted(strata, key=str):
        gs = sorted(strata[label])
        rng.shuffle(gs)
        seen += sum(len(members[g]) for g in gs)
        pos = 0
        for name, frac in fractions.items():
            target = round(seen * frac) - len(chosen[name])
            got = 0
            while pos < len(gs) and got < target:
                chosen[name] += members[gs[pos]]
                got += len(members[gs[pos]])
                pos += 1
        for g in gs[pos:]:
            chosen["train"] += members[g]
    return {name: [items[i] for i in sorted(idx)] for name, idx in chosen.items()}
