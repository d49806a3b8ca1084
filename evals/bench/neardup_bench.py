"""Near-duplicate detection speed and memory, against datasketch in the same run.

.venv/bin/python evals/bench/neardup_bench.py [--rows 1000000] [--baseline-rows 20000]

Generates chat-like texts deterministically (20-120 words from a Zipf-weighted vocabulary of
made-up words; ~5% near-duplicates of an earlier row with 1-3 words replaced, ~2% exact copies),
times `near_duplicate_groups`, and times datasketch MinHash + MinHashLSH on a subsample.
Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import resource
import sys
import threading
import time
from pathlib import Path

import numpy as np
import psutil

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from ftagent.tools.data.neardup import near_duplicate_groups  # noqa: E402

ORIGINAL, NEAR, EXACT = 0, 1, 2


def make_vocab(size: int, rng: np.random.Generator) -> list[str]:
    """Distinct pronounceable made-up words, 2-4 syllables."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"]
    words: set[str] = set()
    while len(words) < size:
        n = int(rng.integers(2, 5))
        words.add("".join(syllables[i] for i in rng.integers(0, len(syllables), n)))
    return sorted(words)


def make_corpus(rows: int, seed: int = 0) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Texts, each row's kind (ORIGINAL/NEAR/EXACT) and its source row (-1 for originals)."""
    rng = np.random.default_rng(seed)
    vocab = make_vocab(4000, rng)
    weights = 1.0 / (np.arange(len(vocab)) + 20.0)  # Zipf-like, flattened at the head
    weights /= weights.sum()
    lengths = rng.integers(20, 121, rows)
    ids = rng.choice(len(vocab), size=int(lengths.sum()), p=weights)
    ends = np.cumsum(lengths)
    draw = rng.random(rows)
    kind = np.where(draw < 0.05, NEAR, np.where(draw < 0.07, EXACT, ORIGINAL))
    kind[0] = ORIGINAL
    source = np.where(kind != ORIGINAL, (rng.random(rows) * np.arange(rows)).astype(np.int64), -1)
    texts: list[str] = []
    for i in range(rows):
        if kind[i] == ORIGINAL:
            words = [vocab[w] for w in ids[ends[i] - lengths[i] : ends[i]].tolist()]
            texts.append(" ".join(words).capitalize() + "?")
        elif kind[i] == EXACT:
            texts.append(texts[source[i]])
        else:
            texts.append(edit(texts[source[i]], rng, vocab))
    return texts, kind, source


def edit(text: str, rng: np.random.Generator, vocab: list[str]) -> str:
    words = text.split()
    for pos in rng.integers(0, len(words), int(rng.integers(1, 4))):
        words[pos] = vocab[int(rng.integers(0, len(vocab)))]
    return " ".join(words)


def shingles(text: str, ngram: int) -> set[str]:
    words = text.lower().split()
    if len(words) < ngram:
        return {" ".join(words)} if words else set()
    return {" ".join(words[i : i + ngram]) for i in range(len(words) - ngram + 1)}


def jaccard(a: str, b: str, ngram: int) -> float:
    sa, sb = shingles(a, ngram), shingles(b, ngram)
    return len(sa & sb) / len(sa | sb) if sa or sb else 0.0


class PeakRss:
    """Samples RSS of this process and of this process plus its children while running."""

    def __init__(self, interval: float = 0.05) -> None:
        self.interval = interval
        self.own = self.total = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            own = me.memory_info().rss
            kids = 0
            for child in me.children(recursive=True):
                try:
                    kids += child.memory_info().rss
                except psutil.NoSuchProcess:
                    pass
            self.own, self.total = max(self.own, own), max(self.total, own + kids)
            self._stop.wait(self.interval)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def datasketch_groups(texts: list[str], threshold: float, num_perm: int, ngram: int) -> list[int]:
    """The usual datasketch recipe: one MinHash per text, query then insert into MinHashLSH."""
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    roots = list(range(len(texts)))
    for i, text in enumerate(texts):
        m = MinHash(num_perm=num_perm, seed=1)
        m.update_batch([s.encode() for s in shingles(text, ngram)])
        hits = lsh.query(m)
        if hits:
            roots[i] = roots[min(hits)]
        lsh.insert(i, m)
    return roots


def report_groups(roots: np.ndarray, texts, kind, source, threshold: float, ngram: int) -> None:
    dup = roots != np.arange(roots.size)
    injected = kind != ORIGINAL
    src = np.where(injected, source, 0)
    joined = injected & (roots == roots[src])
    near = np.flatnonzero(kind == NEAR)
    exact_j = np.array([jaccard(texts[i], texts[source[i]], ngram) for i in near])
    print(f"  rows marked duplicate : {int(dup.sum()):,} (injected {int(injected.sum()):,})")
    exact = kind == EXACT
    print(f"  exact copies joined   : {int(joined[exact].sum()):,} / {int(exact.sum()):,}")
    for floor in (threshold, threshold + 0.05):
        wanted = near[exact_j >= floor] if near.size else near
        print(
            f"  near-dups joined      : {int(joined[wanted].sum()):,} / {wanted.size:,} "
            f"with exact Jaccard to source >= {floor:.2f}"
        )
    print(f"  near-dups joined, any : {int(joined[near].sum()):,} / {near.size:,}")
    print(f"  originals marked dup  : {int((dup & ~injected).sum()):,}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--baseline-rows", type=int, default=20_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--threshold", type=float, default=0.85)
    ap.add_argument("--num-perm", type=int, default=64)
    ap.add_argument("--ngram", type=int, default=3)
    args = ap.parse_args()
    kw = dict(threshold=args.threshold, num_perm=args.num_perm, ngram=args.ngram)

    t = time.perf_counter()
    texts, kind, source = make_corpus(args.rows)
    words = sum(len(s.split()) for s in texts[:10_000]) / min(10_000, len(texts))
    print(
        f"corpus: {len(texts):,} rows, ~{words:.0f} words/row, generated in "
        f"{time.perf_counter() - t:.1f} s"
    )

    rss_before = psutil.Process().memory_info().rss
    with PeakRss() as peak:
        t = time.perf_counter()
        roots = np.array(near_duplicate_groups(texts, workers=args.workers, **kw))
        ours_s = time.perf_counter() - t
    ours_rate = len(texts) / ours_s
    print(f"\nours (workers={args.workers}): {ours_s:.1f} s, {ours_rate:,.0f} rows/s")
    print(
        f"  RSS before call {rss_before / 2**20:,.0f} MiB (corpus); peak during call: "
        f"this process {peak.own / 2**20:,.0f} MiB (+{(peak.own - rss_before) / 2**20:,.0f}), "
        f"with workers {peak.total / 2**20:,.0f} MiB"
    )
    # ru_maxrss, not sampled: it also covers corpus generation; children's ru_maxrss would count
    # the parent's pages at fork time, so workers are only measured by the sampler above.
    self_max = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"  ru_maxrss of this process (corpus generation included): {self_max:,.0f} MiB")
    report_groups(roots, texts, kind, source, args.threshold, args.ngram)

    sub = texts[: args.baseline_rows]
    t = time.perf_counter()
    base_roots = np.array(datasketch_groups(sub, **kw))
    base_s = time.perf_counter() - t
    base_rate = len(sub) / base_s
    n = len(sub)
    print(
        f"\ndatasketch baseline on first {n:,} rows: {base_s:.1f} s, {base_rate:,.0f} rows/s "
        f"(extrapolated to {len(texts):,} rows: {len(texts) / base_rate:,.0f} s)"
    )
    report_groups(base_roots, sub, kind[:n], source[:n], args.threshold, args.ngram)
    t = time.perf_counter()
    sub_roots = np.array(near_duplicate_groups(sub, workers=1, **kw))
    sub_rate = n / (time.perf_counter() - t)
    agree = float(np.mean((sub_roots != np.arange(n)) == (base_roots != np.arange(n))))
    print(
        f"ours, workers=1, same {n:,} rows: {sub_rate:,.0f} rows/s; agreement with datasketch "
        f"on duplicate flags: {agree:.4f}"
    )
    print(
        f"\nratio ours/baseline rows/s: {ours_rate / base_rate:,.1f}x "
        f"(single process on the subsample: {sub_rate / base_rate:,.1f}x)"
    )


if __name__ == "__main__":
    main()
