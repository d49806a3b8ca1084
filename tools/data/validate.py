"""Validation without preparation, streaming: two passes over the files (rows and exact
duplicates, then near-duplicates), keeping only per-row fingerprints, positions and the
MinHash index in memory, never the rows themselves."""

from __future__ import annotations

import multiprocessing as mp
from array import array
from collections import Counter
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from dataclasses import dataclass
from operator import itemgetter

from ftagent.tools.data import checks as C
from ftagent.tools.data.dataset_checks import (
    MAX_LABEL_WORDS,
    MAX_LABELS,
    files_sha256,
    finish_report,
    previews_checked,
)
from ftagent.tools.data.fastscan import exact_key, read_chunks, scan_chunk
from ftagent.tools.data.readers import (
    file_kind,
    jsonl_ranges,
    parse_jsonl_lines,
    read_jsonl_range,
)
from ftagent.tools.data.report import DataReport, Tally
from ftagent.tools.data.rows import PrepareOptions, iter_checked, open_records, row_ref
from ftagent.tools.data.tokens import measure

NEARDUP_WORKERS = 2
WORKERS = 2  # processes for the first pass over big JSONL inputs
PARALLEL_MIN_BYTES = 8 << 20  # below this, starting processes costs more than it saves
FAST_RANGE_MAX = 64 << 20
TOKEN_BATCH = 512


class _LabelWatch:
    """Counts answers while they still look like a label set; gives up (and frees the
    counter) once there are too many distinct or too long answers."""

    def __init__(self) -> None:
        self.counts: Counter | None = Counter()

    def add(self, answer: str | None) -> None:
        """`answer` is None when it is too long to be a label."""
        if self.counts is None:
            return
        if answer is None or (answer not in self.counts and len(self.counts) >= MAX_LABELS):
            self.counts = None
            return
        self.counts[answer] += 1

    def task(self, kind: str, kept: int) -> tuple[str, list[str], Counter]:
        if kind == "preference":
            return "preference", [], Counter()
        counts = self.counts or Counter()
        if kind == "classification" or (len(counts) >= 2 and len(counts) <= max(2, kept // 2)):
            return "classification", sorted(counts), counts
        return "generation", [], Counter()


@dataclass
class PartResult:
    """What one piece of the input contributes; small enough to send between processes."""

    counts: dict[str, int]
    examples: dict[str, list[str]]
    stats: dict[str, int]
    dropped: int
    items: list[tuple[str, int, str | None]]  # (ref, 64-bit fingerprint, short answer)
    lengths: list[tuple[int, int]]  # (prompt, total) tokens, aligned with items
    preview: list[dict]


def scan_part(records, schema, single: bool, tokenizer, n_preview: int) -> PartResult:
    """Pass one over some records: row checks, fingerprints, answers, token lengths."""
    tally, stats, dropped = Tally(), {"rows": 0, "converted": 0}, [0]

    def reject(ref, check, detail, raw):
        tally.add(check, f"{ref}{': ' + detail if detail else ''}")
        dropped[0] += 1

    items, lengths, preview, pending = [], [], [], []
    want_tokens = tokenizer is not None and schema.kind != "prompts"
    for item in iter_checked(records, schema, single, reject, tally, stats):
        fp = exact_key(item.example)
        answer = None
        if schema.kind not in ("prompts", "preference"):
            text = C.answer_text(item.example).strip()
            answer = text if len(text.split()) <= MAX_LABEL_WORDS else None
        items.append((item.ref, fp, answer))
        if want_tokens:
            pending.append(item.example)
            if len(preview) < n_preview:
                preview.append(item.example)
            if len(pending) >= TOKEN_BATCH:
                lengths += [(ln.prompt, ln.total) for ln in measure(tokenizer, pending)]
                pending.clear()
    if pending:
        lengths += [(ln.prompt, ln.total) for ln in measure(tokenizer, pending)]
    return PartResult(tally.counts, tally.examples, stats, dropped[0], items, lengths, preview)


def _scan_range(job) -> PartResult:
    """Worker: one byte range of a JSONL file."""
    (path, start, end, first_line), schema, single, model, n_preview = job
    tokenizer = None
    if model:
        from ftagent.tools.data.tokens import load_tokenizer

        tokenizer = load_tokenizer(model)
    records = read_jsonl_range(path, start, end, first_line)
    return scan_part(records, schema, single, tokenizer, n_preview)


def _scan_range_fast(job) -> PartResult:
    """Worker: one byte range of a JSONL chat file through the column checks
    (`fastscan`); the rows they cannot clear go through `iter_checked` in line order, so
    findings arrive in the same order as on the Python path."""
    (path, start, end, first_line), schema, single = job
    tally, stats, dropped = Tally(), {"rows": 0, "converted": 0}, [0]

    def reject(ref, check, detail, raw):
        tally.add(check, f"{ref}{': ' + detail if detail else ''}")
        dropped[0] += 1

    items: list[tuple[str, int, str | None]] = []
    labels = True  # False once an answer is too long to be a label
    for piece, line in read_chunks(path, start, end, first_line):
        chunk = scan_chunk(piece, line)
        del piece
        at = [0]  # the line of the record iter_checked is working on

        def records(chunk=chunk, at=at):
            for lineno, raw in chunk.slow:
                at[0] = lineno
                yield from parse_jsonl_lines(path, [raw], lineno)

        slow = []
        for item in iter_checked(records(), schema, single, reject, tally, stats):
            text = C.answer_text(item.example).strip()
            answer = text if len(text.split()) <= MAX_LABEL_WORDS else None
            labels = labels and answer is not None
            slow.append((at[0], (item.ref, exact_key(item.example), answer)))
        labels = labels and chunk.answers is not None
        answers = chunk.answers if chunk.answers is not None else [None] * len(chunk.lines)
        refs = [row_ref(path, ln, single) for ln in chunk.lines]
        fast = zip(refs, chunk.keys, answers, strict=True)
        stats["rows"] += len(refs)
        stats["converted"] += len(refs)
        if slow:  # two runs in line order: sorted() merges them
            both = [*zip(chunk.lines, fast, strict=True), *slow]
            items += [it for _, it in sorted(both, key=itemgetter(0))]
        else:
            items += fast
    if not labels:  # one answer that is no label settles it for the whole input
        items = [(ref, key, None) for ref, key, _ in items]
    return PartResult(tally.counts, tally.examples, stats, dropped[0], items, [], [])


def _fast_ok(files, schema, tokenizer) -> bool:
    """The column checks cover plain JSONL chat files when no tokenizer is asked for."""
    return (
        tokenizer is None
        and schema.name == "messages"
        and all(f.is_file() and file_kind(f) == "jsonl" for f in files)
    )


def pass_one(files, records, schema, opts: PrepareOptions, tokenizer, workers: int, fast=True):
    """PartResults in input order: JSONL inputs big enough are cut into byte ranges and
    scanned by `workers` processes; anything else is scanned here. Plain JSONL chat goes
    through the column checks (`fast`), in pieces even in this process, since they cost
    little memory per piece."""
    single = len(files) == 1
    total = sum(f.stat().st_size for f in files if f.is_file())
    fast = fast and _fast_ok(files, schema, tokenizer)
    parallel = workers >= 2 and total >= PARALLEL_MIN_BYTES
    if not fast and (not parallel or any(file_kind(f) != "jsonl" for f in files)):
        yield scan_part(records(), schema, single, tokenizer, opts.preview)
        return
    target = max(PARALLEL_MIN_BYTES // 4, total // (workers * 4))
    if fast:  # a range's results travel back in one piece: bounded, whatever the file size
        target = min(target, FAST_RANGE_MAX)
    ranges = (r for f in files for r in jsonl_ranges(f, target))
    if fast:
        jobs = ((r, schema, single) for r in ranges)
        if not parallel:
            yield from map(_scan_range_fast, jobs)
            return
        scan = _scan_range_fast
    else:
        jobs = (
            (r, schema, single, opts.model, opts.preview if i == 0 else 0)
            for i, r in enumerate(ranges)
        )
        scan = _scan_range
    ctx = mp.get_context("spawn")  # no fork of a process that may hold torch threads
    with ProcessPoolExecutor(workers, mp_context=ctx) as pool:
        yield from pool.map(scan, jobs)


def validate_stream(
    spec, opts: PrepareOptions, tokenizer=None, workers: int = WORKERS, fast: bool = True
) -> DataReport:
    """`fast=False` keeps every row on the Python path (the reference the column checks
    are tested against)."""
    schema, votes, files, records = open_records(spec, opts)
    # Hashing a big file takes seconds; hashlib releases the GIL, so it overlaps the scan.
    hasher = ThreadPoolExecutor(1)
    digest = hasher.submit(files_sha256, files)
    single = len(files) == 1
    tally, stats = Tally(), {"rows": 0, "converted": 0}
    dropped = 0
    seen: dict[int, int] = {}  # 64-bit fingerprint -> position of the first copy
    refs: list[str] = []  # rows kept after exact dedup (for near-dup messages)
    keep_mask = bytearray()  # per passing row: kept after exact dedup?
    labels = _LabelWatch()
    lengths, prompt_lengths = array("I"), array("I")
    preview_items: list[dict] = []
    for part in pass_one(files, records, schema, opts, tokenizer, workers, fast):
        tally.merge(part.counts, part.examples)
        for key, value in part.stats.items():
            stats[key] += value
        dropped += part.dropped
        preview_items += part.preview[: opts.preview - len(preview_items)]
        watch = labels.counts is not None and schema.kind not in ("prompts", "preference")
        for i, (ref, fp, answer) in enumerate(part.items):
            first = seen.setdefault(fp, len(refs))
            if first != len(refs):
                tally.add("exact_duplicate", f"{ref}: same as {refs[first]}")
                dropped += 1
                keep_mask.append(0)
                continue
            refs.append(ref)
            keep_mask.append(1)
            if watch:
                labels.add(answer)
            if part.lengths:
                prompt_lengths.append(part.lengths[i][0])
                lengths.append(part.lengths[i][1])
    del seen
    kept = len(refs)
    near_dup_rows: set[int] = set()
    if opts.near_dup_threshold and kept:
        near_dup_rows = _near_duplicates(records, schema, single, keep_mask, refs, opts, tally)
        kept -= len(near_dup_rows)
        dropped += len(near_dup_rows)
    extra = {}
    if tokenizer is not None and lengths:
        extra = _length_checks(
            tokenizer, lengths, prompt_lengths, near_dup_rows, refs, preview_items, opts, tally
        )
        kept -= extra.pop("dropped")
    if schema.kind == "prompts" and kept:
        tally.counts["prompt_only"] = kept
        tally.examples["prompt_only"] = refs[:5]
    task_type, label_list, label_counts = labels.task(schema.kind, kept)
    info = {"schema": schema, "votes": votes, "sha256": digest.result(), **stats}
    hasher.shutdown()
    return finish_report(
        spec,
        info,
        tally,
        kept,
        task_type,
        label_list,
        label_counts,
        dropped,
        opts,
        tokenizer is not None,
        extra,
    )


def _near_duplicates(records, schema, single, keep_mask, refs, opts, tally) -> set[int]:
    """Second pass: the texts of the rows kept so far, streamed into the MinHash index."""
    from ftagent.tools.data.neardup import near_duplicate_groups

    quiet = Tally()
    stats = {"rows": 0, "converted": 0}
    items = iter_checked(records(), schema, single, lambda *a: None, quiet, stats, light=True)
    texts = (
        C.full_text(item.example) for item, keep in zip(items, keep_mask, strict=False) if keep
    )
    roots = near_duplicate_groups(texts, threshold=opts.near_dup_threshold, workers=NEARDUP_WORKERS)
    dups = set()
    for idx, root in enumerate(roots):
        if root != idx:
            tally.add("near_duplicate", f"{refs[idx]}: near-same as {refs[root]}")
            dups.add(idx)
    return dups


def _length_checks(
    tokenizer, lengths, prompt_lengths, skip, refs, preview_items, opts, tally
) -> dict:
    from ftagent.tools.data.tokens import histogram, percentile_table

    dropped = 0
    for idx, (total, prompt) in enumerate(zip(lengths, prompt_lengths, strict=True)):
        if idx in skip:
            continue
        if prompt >= opts.max_length:
            tally.add("answer_truncated", f"{refs[idx]}: prompt alone is {prompt} tokens")
            dropped += 1
        elif total > opts.max_length:
            tally.add("too_long", f"{refs[idx]}: {total} tokens")
            dropped += opts.overlong == "drop"
    return {
        "dropped": dropped,
        "token_lengths": percentile_table(list(lengths)),
        "token_histogram": histogram(list(lengths)),
        "preview": previews_checked(tokenizer, preview_items, opts, tally),
    }
