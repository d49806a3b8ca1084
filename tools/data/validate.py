"""Validation without preparation, streaming: two passes over the files (rows and exact
duplicates, then near-duplicates), keeping only per-row fingerprints, positions and the
MinHash index in memory, never the rows themselves."""

from __future__ import annotations

from array import array
from collections import Counter

from tools.data import checks as C
from tools.data.prepare import (
    MAX_LABEL_WORDS,
    MAX_LABELS,
    PrepareOptions,
    fingerprint,
    finish_report,
    iter_checked,
    open_records,
)
from tools.data.report import DataReport, Tally

NEARDUP_WORKERS = 2
TOKEN_BATCH = 512


class _LabelWatch:
    """Counts answers while they still look like a label set; gives up (and frees the
    counter) once there are too many distinct or too long answers."""

    def __init__(self) -> None:
        self.counts: Counter | None = Counter()

    def add(self, answer: str) -> None:
        if self.counts is None:
            return
        if len(answer.split()) > MAX_LABEL_WORDS or (
            answer not in self.counts and len(self.counts) >= MAX_LABELS
        ):
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


def validate_stream(spec, opts: PrepareOptions, tokenizer=None) -> DataReport:
    schema, votes, files, records = open_records(spec, opts)
    single = len(files) == 1
    tally, stats = Tally(), {"rows": 0, "converted": 0}
    dropped = [0]

    def reject(ref, check, detail, raw):
        tally.add(check, f"{ref}{': ' + detail if detail else ''}")
        dropped[0] += 1

    seen: dict[int, int] = {}  # 64-bit fingerprint -> position of the first copy
    refs: list[str] = []  # only for rows kept after exact dedup (for near-dup messages)
    keep_mask = bytearray()  # per passing row: kept after exact dedup?
    labels = _LabelWatch()
    lengths = array("I")
    prompt_lengths = array("I")
    preview_items = []
    pending: list[dict] = []

    def flush() -> None:
        from tools.data.tokens import measure

        for ln in measure(tokenizer, pending):
            lengths.append(ln.total)
            prompt_lengths.append(ln.prompt)
        pending.clear()

    for item in iter_checked(records(), schema, single, reject, tally, stats):
        fp = int.from_bytes(fingerprint(item.example)[:8], "little")
        if fp in seen:
            reject(item.ref, "exact_duplicate", f"same as {refs[seen[fp]]}", None)
            keep_mask.append(0)
            continue
        seen[fp] = len(refs)
        refs.append(item.ref)
        keep_mask.append(1)
        if schema.kind != "prompts" and schema.kind != "preference":
            labels.add(C.answer_text(item.example).strip())
        if tokenizer is not None and schema.kind != "prompts":
            pending.append(item.example)
            if len(pending) >= TOKEN_BATCH:
                flush()
            if len(preview_items) < opts.preview:
                preview_items.append(item.example)
    flush()
    del seen
    kept = len(refs)
    near_dup_rows = set()
    if opts.near_dup_threshold and kept:
        near_dup_rows = _near_duplicates(records, schema, single, keep_mask, refs, opts, tally)
        kept -= len(near_dup_rows)
        dropped[0] += len(near_dup_rows)
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
    info = {"schema": schema, "votes": votes, **stats}
    return finish_report(
        spec,
        info,
        tally,
        kept,
        task_type,
        label_list,
        label_counts,
        dropped[0],
        opts,
        tokenizer is not None,
        extra,
    )


def _near_duplicates(records, schema, single, keep_mask, refs, opts, tally) -> set[int]:
    """Second pass: the texts of the rows kept so far, streamed into the MinHash index."""
    from tools.data.neardup import near_duplicate_groups

    quiet = Tally()
    stats = {"rows": 0, "converted": 0}
    items = iter_checked(records(), schema, single, lambda *a: None, quiet, stats)
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
    from tools.data.tokens import histogram, loss_preview, percentile_table

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
        "preview": [loss_preview(tokenizer, ex, opts.max_length) for ex in preview_items],
    }
