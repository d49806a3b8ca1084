"""Near-duplicate groups of short texts: MinHash + LSH banding, vectorised with numpy.

Choices, and why:

- Shingles are word n-grams of the lowercased, whitespace-split text. Each word is hashed
  once with xxh32 (deterministic across processes, unlike the salted builtin ``hash``; a
  bounded per-process cache skips re-hashing frequent words) and n-grams are combined from
  the per-word hashes with numpy over a whole batch, so Python only touches each word once.
- Permutations are multiply-add-shift hashes ``(a*x + b) mod 2**64 >> 32`` on 32-bit shingle
  hashes: strongly universal (Dietzfelbinger 1996) and only a multiply and an add per value in
  uint64 numpy arithmetic, where ``mod 2**61-1`` would need a slow integer division. Since the
  shift is monotone, the minimum is taken before shifting (``np.minimum.reduceat`` over doc
  offsets, one permutation at a time so a batch needs two shingle-sized buffers).
- Banding uses datasketch's criterion (integrated false positives and negatives around the
  threshold) weighted 0.1/0.9 instead of 0.5/0.5: a banding false positive only costs a
  verification, a false negative is a missed duplicate. At 0.85 and 64 permutations that is
  7 bands of 9 rows (a pair at Jaccard 0.9 becomes a candidate with p=0.97) instead of
  `lsh_params`' 4x15 (p=0.60). Candidates stay linear in rows (see below).
- Band keys are a 64-bit weighted sum of the band's signature values. A key collision only
  adds a candidate, which verification then rejects, so no stronger mixing is needed.
- Candidates: per band, rows are sorted by key and each row in a run of equal keys is linked
  to the run's first row and to its predecessor (linear in rows even for huge buckets; the
  predecessor link keeps a bad first row from hiding a real pair).
- Verification keeps 8 bits of each signature value (b-bit minwise hashing, Li & Koenig
  2010): 64 bytes a row at 64 permutations instead of 256, with the 1/256 chance agreement
  corrected for, so candidates are checked against an unbiased Jaccard estimate.
- Per row only the band keys and these fingerprints are kept, so memory is the index plus
  one batch. Groups are connected components of verified pairs; roots are the smallest index.
- ``workers > 1`` computes batches in spawned processes (independent batches, bounded queue);
  every value depends only on the text and ``seed``, so results do not depend on
  ``workers`` or ``batch_size``.
"""

from __future__ import annotations

import math
import multiprocessing as mp
from collections import deque
from collections.abc import Iterable, Iterator
from functools import lru_cache
from itertools import chain, islice

import numpy as np
import xxhash

__all__ = ["lsh_params", "near_duplicate_groups"]

FINGERPRINT_BITS = 8
_WORD_CACHE_MAX = 500_000  # words: at most ~60 MB, emptied after each call
_PAD = np.uint64(1 << 32)  # stands in for missing words of a short text; no word hashes to it
_NGRAM_MUL = np.uint64(0x9E3779B97F4A7C15)
_FP_WEIGHT = 0.1  # banding favours recall: verification removes false positives, not misses
_PAIR_CHUNK = 1 << 20  # candidate pairs verified at a time (64 MB of fingerprints each side)

Batch = tuple[np.ndarray, np.ndarray, np.ndarray]  # band keys (b, n), fingerprints (n, k), empty


def near_duplicate_groups(
    texts: Iterable[str],
    threshold: float = 0.85,
    num_perm: int = 64,
    ngram: int = 3,
    seed: int = 1,
    batch_size: int = 20_000,
    workers: int = 1,
) -> list[int]:
    """For each text (in input order) the index of the first text of its near-duplicate
    group: itself when it has no earlier near-duplicate. Texts are compared as sets of
    word n-grams (lowercased, whitespace-split; texts shorter than `ngram` words use the
    whole word list as one shingle). Groups are transitive (union-find over LSH candidate
    pairs that pass a check of estimated Jaccard >= threshold)."""
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    if num_perm < 1 or ngram < 1 or batch_size < 1 or workers < 1:
        raise ValueError("num_perm, ngram, batch_size and workers must be >= 1")
    bands, rows = _banding(float(threshold), int(num_perm), _FP_WEIGHT)
    params = (ngram, num_perm, seed, bands, rows)
    try:
        parts = list(_index_batches(_batches(texts, batch_size), params, workers))
    finally:
        _word_cache.clear()  # workers=1 filled this process's cache; don't keep it resident
    if not parts:
        return []
    fingerprints = np.concatenate([p[1] for p in parts])
    empty = np.concatenate([p[2] for p in parts])
    keys = [p[0] for p in parts]
    del parts  # frees the per-batch fingerprints
    first, later = _candidate_pairs(keys, empty)
    del keys
    first, later = _verified(first, later, fingerprints, _min_matches(threshold, num_perm))
    return _components(len(empty), first, later).tolist()


def lsh_params(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with bands*rows <= num_perm minimising false positives+negatives
    around `threshold` (the same criterion datasketch's MinHashLSH uses)."""
    if not 0.0 <= threshold <= 1.0 or num_perm < 1:
        raise ValueError("need 0 <= threshold <= 1 and num_perm >= 1")
    return _banding(float(threshold), int(num_perm), 0.5)


@lru_cache(maxsize=64)
def _banding(threshold: float, num_perm: int, fp_weight: float) -> tuple[int, int]:
    """(bands, rows) minimising fp_weight*FP + (1-fp_weight)*FN, as datasketch's weights do."""
    # The integrands are polynomials of degree <= bands*rows <= num_perm, which Gauss-Legendre
    # with num_perm//2 + 1 nodes integrates exactly: datasketch's quad() result without scipy.
    nodes, weights = np.polynomial.legendre.leggauss(num_perm // 2 + 1)
    below = threshold / 2 * (nodes + 1)  # nodes mapped onto [0, threshold]
    above = threshold + (1 - threshold) / 2 * (nodes + 1)  # and onto [threshold, 1]
    best, best_error = (1, 1), math.inf
    for b in range(1, num_perm + 1):  # same scan order and tie-break as datasketch
        r = np.arange(1, num_perm // b + 1)[:, None]
        false_pos = threshold / 2 * ((1 - (1 - below**r) ** b) @ weights)
        false_neg = (1 - threshold) / 2 * ((1 - above**r) ** b @ weights)
        error = fp_weight * false_pos + (1 - fp_weight) * false_neg
        i = int(np.argmin(error))
        if error[i] < best_error:
            best, best_error = (b, i + 1), float(error[i])
    return best


def _min_matches(threshold: float, num_perm: int) -> int:
    """Equal fingerprints needed for a Jaccard estimate >= threshold.

    Unequal values agree by chance with probability 2**-bits, so P(match) = J + (1-J)/2**bits.
    """
    chance = 2.0**-FINGERPRINT_BITS
    return math.ceil(num_perm * (threshold * (1 - chance) + chance) - 1e-9)


# --- per batch: texts -> band keys + fingerprints --------------------------------------------


def _batches(texts: Iterable[str], size: int) -> Iterator[list[str]]:
    it = iter(texts)
    while batch := list(islice(it, size)):
        yield batch


def _index_batches(batches: Iterator[list[str]], params: tuple, workers: int) -> Iterator[Batch]:
    """Index each batch, in order; in `workers` processes when there is more than one batch."""
    head = list(islice(batches, 2))
    if workers == 1 or len(head) < 2:
        for batch in chain(head, batches):
            yield _index_batch(batch, *params)
        return
    with mp.get_context("spawn").Pool(workers) as pool:
        pending: deque = deque()
        for batch in chain(head, batches):
            pending.append(pool.apply_async(_index_batch, (batch, *params)))
            if len(pending) >= 2 * workers:  # bound batches in flight, so memory stays flat
                yield pending.popleft().get()
        while pending:
            yield pending.popleft().get()


def _index_batch(
    texts: list[str], ngram: int, num_perm: int, seed: int, bands: int, rows: int
) -> Batch:
    words, lengths = _word_hashes(texts)
    shingles, counts = _shingle_hashes(words, lengths, ngram)
    a, b = _permutations(num_perm, seed)
    signatures = _minhash(shingles, counts, a, b)
    return _band_keys(signatures, bands, rows), _fingerprints(signatures), counts == 0


class _WordHashes(dict):
    """word -> xxh32, filled on first use."""

    def __missing__(self, word: str) -> int:
        value = self[word] = xxhash.xxh32_intdigest(word.encode("utf-8", "surrogatepass"))
        return value


_word_cache = _WordHashes()


def _word_hashes(texts: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """All words' 32-bit hashes of the batch, concatenated, and the word count of each text.

    Texts are split one at a time, so only one text's word strings exist at once.
    """
    if len(_word_cache) > _WORD_CACHE_MAX:
        _word_cache.clear()
    lengths: list[int] = []

    def split(text: str) -> list[str]:
        words = text.lower().split()
        lengths.append(len(words))
        return words

    words = chain.from_iterable(map(split, texts))
    hashes = np.fromiter(map(_word_cache.__getitem__, words), dtype=np.uint64)
    return hashes, np.array(lengths, dtype=np.int64)


def _shingle_hashes(words: np.ndarray, lengths: np.ndarray, ngram: int):
    """32-bit hashes of every text's n-grams, concatenated, and the shingle count per text.

    A text shorter than `ngram` gives one shingle of all its words (the missing ones padded).
    """
    ends = np.cumsum(lengths)
    end_of = np.repeat(ends, lengths)
    span_of = np.repeat(np.minimum(lengths, ngram), lengths)
    starts = np.flatnonzero(np.arange(words.size) + span_of <= end_of)
    end_of = end_of[starts]
    h = words[starts]
    for j in range(1, ngram):
        inside = starts + j < end_of
        term = np.full(starts.size, _PAD, dtype=np.uint64)
        term[inside] = words[starts[inside] + j]
        h = h * _NGRAM_MUL + term
    counts = np.where(lengths > 0, np.maximum(lengths - ngram + 1, 1), 0)
    return _fmix64(h) >> np.uint64(32), counts


def _fmix64(h: np.ndarray) -> np.ndarray:
    """MurmurHash3's finaliser: spreads the n-gram combination over all 64 bits."""
    h = h ^ (h >> np.uint64(33))
    h *= np.uint64(0xFF51AFD7ED558CCD)
    h ^= h >> np.uint64(33)
    h *= np.uint64(0xC4CEB9FE1A85EC53)
    h ^= h >> np.uint64(33)
    return h


@lru_cache(maxsize=8)
def _permutations(num_perm: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    top = np.iinfo(np.uint64).max
    a = rng.integers(1, top, size=num_perm, dtype=np.uint64, endpoint=True)
    b = rng.integers(0, top, size=num_perm, dtype=np.uint64, endpoint=True)
    return a, b


def _minhash(shingles: np.ndarray, counts: np.ndarray, a: np.ndarray, b: np.ndarray):
    """(texts, num_perm) uint32 signatures; all zero for texts without shingles."""
    signatures = np.zeros((counts.size, a.size), dtype=np.uint32)
    has = counts > 0
    if not has.any():
        return signatures
    offsets = np.concatenate(([0], np.cumsum(counts[has])[:-1]))
    mins = np.empty((offsets.size, a.size), dtype=np.uint64)
    buf = np.empty_like(shingles)
    for k in range(a.size):
        np.multiply(shingles, a[k], out=buf)
        buf += b[k]
        mins[:, k] = np.minimum.reduceat(buf, offsets)
    signatures[has] = mins >> np.uint64(32)
    return signatures


@lru_cache(maxsize=8)
def _band_weights(rows: int) -> np.ndarray:
    rng = np.random.default_rng(0x5EED)
    return rng.integers(0, np.iinfo(np.uint64).max, size=rows, dtype=np.uint64) | np.uint64(1)


def _band_keys(signatures: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """(bands, texts) uint64: one bucket key per band."""
    n = signatures.shape[0]
    banded = signatures[:, : bands * rows].astype(np.uint64).reshape(n, bands, rows)
    keys = (banded * _band_weights(rows)).sum(axis=2, dtype=np.uint64)  # wraps mod 2**64
    return np.ascontiguousarray(keys.T)


def _fingerprints(signatures: np.ndarray) -> np.ndarray:
    return (signatures & ((1 << FINGERPRINT_BITS) - 1)).astype(np.uint8)


# --- whole corpus: candidates -> verified pairs -> groups -----------------------------------


def _candidate_pairs(keys: list[np.ndarray], empty: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unique (earlier, later) row pairs sharing a bucket in some band; empty texts never.

    `keys` holds each batch's (bands, rows) keys; bands are joined one at a time to save memory.
    """
    rows = np.flatnonzero(~empty)
    firsts, laters = [], []
    for band in range(keys[0].shape[0]):
        first, later = _bucket_links(np.concatenate([k[band] for k in keys])[rows])
        firsts.append(rows[first])
        laters.append(rows[later])
    first = np.concatenate(firsts)
    later = np.concatenate(laters)
    n = np.int64(empty.size)
    code = np.unique(first * n + later)
    return code // n, code % n


def _bucket_links(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Each row of a run of equal keys linked to the run's first row and to its predecessor."""
    order = np.argsort(keys, kind="stable")  # stable: a run lists its rows in input order
    sorted_keys = keys[order]
    same = sorted_keys[1:] == sorted_keys[:-1]
    later = np.flatnonzero(same) + 1
    if not later.size:
        return later, later
    run_start = np.arange(keys.size)
    run_start[1:][same] = 0
    np.maximum.accumulate(run_start, out=run_start)
    prev = later - 1
    not_head = prev != run_start[later]
    first = np.concatenate((order[run_start[later]], order[prev[not_head]]))
    return first, np.concatenate((order[later], order[later[not_head]]))


def _verified(first, later, fingerprints: np.ndarray, min_matches: int):
    keep = np.zeros(first.size, dtype=bool)
    for lo in range(0, first.size, _PAIR_CHUNK):
        hi = lo + _PAIR_CHUNK
        same = fingerprints[first[lo:hi]] == fingerprints[later[lo:hi]]
        keep[lo:hi] = np.count_nonzero(same, axis=1) >= min_matches
    return first[keep], later[keep]


def _components(n: int, first: np.ndarray, later: np.ndarray) -> np.ndarray:
    """Root (smallest index) of each row's connected component.

    Vectorised union-find: hook the larger root of every pair under the smaller one, then
    compress paths until every row points at its root; repeat while pairs span two roots.
    Parents only ever decrease, so there are no cycles and each root is its component's min.
    """
    parent = np.arange(n, dtype=np.int64)
    while first.size:
        ra, rb = parent[first], parent[later]
        split = ra != rb
        first, later, ra, rb = first[split], later[split], ra[split], rb[split]
        if not first.size:
            break
        np.minimum.at(parent, np.maximum(ra, rb), np.minimum(ra, rb))
        while True:
            grand = parent[parent]
            if np.array_equal(grand, parent):
                break
            parent = grand
    return parent
