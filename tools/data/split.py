"""Seeded train/validation/test split."""

from __future__ import annotations

import random
from typing import TypeVar

T = TypeVar("T")


def split_sizes(n: int, val_fraction: float, test_fraction: float) -> tuple[int, int, int]:
    """At least one validation and one test example once there are 3 or more rows."""
    if n < 3:
        raise ValueError(f"need at least 3 examples to split, got {n}")
    n_test = max(1, round(n * test_fraction))
    n_val = max(1, round(n * val_fraction))
    return n - n_val - n_test, n_val, n_test


def seeded_split(
    items: list[T], seed: int, val_fraction: float = 0.1, test_fraction: float = 0.2
) -> dict[str, list[T]]:
    order = list(range(len(items)))
    random.Random(seed).shuffle(order)
    n_train, n_val, _ = split_sizes(len(items), val_fraction, test_fraction)
    pick = lambda idx: [items[i] for i in sorted(idx)]  # noqa: E731 - keep file order inside a split
    return {
        "train": pick(order[:n_train]),
        "val": pick(order[n_train : n_train + n_val]),
        "test": pick(order[n_train + n_val :]),
    }
