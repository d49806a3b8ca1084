"""data_prep's tool: read, detect the schema, convert, check, fix on a copy, split and
report. The input files are only ever read; every dropped row goes to rejected.jsonl."""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import orjson
from ftagent.tools.atomic import write_json, write_text
from ftagent.tools.data import checks as C
from ftagent.tools.data.dataset_checks import (
    MAX_LABEL_WORDS,
    MAX_LABELS,
    finish_report,
    previews_checked,
)
from ftagent.tools.data.report import DataReport, Tally, to_markdown
from ftagent.tools.data.rows import (
    DataError,
    Item,
    PrepareOptions,
    fingerprint,
    iter_checked,
    open_records,
)
from ftagent.tools.data.schema import label_prompt
from ftagent.tools.data.splits import split_groups, stratified_group_split
from ftagent.tools.data.validate import WORKERS, validate_stream

# Worker processes write the shards of big outputs only: for small ones their start-up
# would outweigh the write.
PARALLEL_SAVE_ROWS = 200_000


@dataclass
class Analysis:
    kept: list[Item]
    rejected: list[dict] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    info: dict = field(default_factory=dict)


def _reject(a: Analysis, item_ref: str, check: str, where: str, raw) -> None:
    a.tally.add(check, f"{item_ref}{': ' + where if where else ''}")
    a.rejected.append({"ref": item_ref, "check": check, "detail": where, "record": raw})


def read_and_convert(spec, opts: PrepareOptions) -> Analysis:
    """Parse, convert and run the row checks; exact duplicates dropped here."""
    schema, votes, files, records = open_records(spec, opts)
    a = Analysis(kept=[], info={"schema": schema, "votes": votes})
    stats = {"rows": 0, "converted": 0}
    seen: dict[bytes, str] = {}

    def reject(ref, check, detail, raw):
        _reject(a, ref, check, detail, raw)

    for item in iter_checked(records(), schema, len(files) == 1, reject, a.tally, stats):
        fp = fingerprint(item.example)
        if fp in seen:
            _reject(a, item.ref, "exact_duplicate", f"same as {seen[fp]}", item.raw)
            continue
        seen[fp] = item.ref
        a.kept.append(item)
    a.info.update(stats)
    if schema.kind == "prompts" and a.kept:
        a.tally.counts["prompt_only"] = len(a.kept)
        a.tally.examples["prompt_only"] = [i.ref for i in a.kept[:5]]
    return a


def drop_near_duplicates(a: Analysis, threshold: float) -> None:
    from ftagent.tools.data.neardup import near_duplicate_groups

    roots = near_duplicate_groups([C.full_text(i.example) for i in a.kept], threshold=threshold)
    keep = []
    for idx, (item, root) in enumerate(zip(a.kept, roots, strict=True)):
        if root != idx:
            _reject(a, item.ref, "near_duplicate", f"near-same as {a.kept[root].ref}", item.raw)
        else:
            keep.append(item)
    a.kept = keep


def task_of(a: Analysis) -> tuple[str, list[str]]:
    kind = a.info["schema"].kind
    if kind == "preference":
        return "preference", []
    answers = Counter(C.answer_text(i.example).strip() for i in a.kept) if kind != "prompts" else {}
    if kind == "classification" or (
        answers
        and len(answers) >= 2
        and all(len(k.split()) <= MAX_LABEL_WORDS for k in answers)
        and len(answers) <= min(MAX_LABELS, max(2, len(a.kept) // 2))
    ):
        return "classification", sorted(answers)
    return "generation", []


def add_label_prompt(a: Analysis, labels: list[str]) -> None:
    """Text-label rows become a chat task that names the label set."""
    system = {"role": "system", "content": label_prompt(labels)}
    for item in a.kept:
        if item.example["messages"][0]["role"] != "system":
            item.example["messages"].insert(0, dict(system))


def check_lengths(a: Analysis, tokenizer, opts: PrepareOptions) -> dict:
    from ftagent.tools.data.tokens import histogram, measure, percentile_table

    lengths = measure(tokenizer, [i.example for i in a.kept])
    keep = []
    for item, ln in zip(a.kept, lengths, strict=True):
        if ln.prompt >= opts.max_length:
            _reject(
                a,
                item.ref,
                "answer_truncated",
                f"prompt alone is {ln.prompt} tokens (max {opts.max_length})",
                item.raw,
            )
            continue
        if ln.total > opts.max_length:
            if opts.overlong == "drop":
                _reject(a, item.ref, "too_long", f"{ln.total} tokens", item.raw)
                continue
            a.tally.add("too_long", f"{item.ref}: {ln.total} tokens (truncated in training)")
        keep.append(item)
    a.kept = keep
    totals = [ln.total for ln in lengths]
    return {
        "token_lengths": percentile_table(totals),
        "token_histogram": histogram(totals),
        "preview": previews_checked(
            tokenizer, [i.example for i in a.kept[: opts.preview]], opts, a.tally
        ),
    }


def drop_leakage(a: Analysis, test: list[Item], threshold: float | None) -> None:
    """Training rows whose prompt matches a test prompt (exactly or near) are dropped."""
    combined = test + a.kept
    groups = split_groups(combined, threshold)
    test_groups = set(groups[: len(test)])
    keep = []
    for item, g in zip(a.kept, groups[len(test) :], strict=True):
        if g in test_groups:
            _reject(a, item.ref, "leakage", "prompt also in the test set", item.raw)
        else:
            keep.append(item)
    a.kept = keep


def analyze(spec, opts: PrepareOptions, tokenizer=None) -> tuple[Analysis, DataReport]:
    a = read_and_convert(spec, opts)
    schema = a.info["schema"]
    if opts.near_dup_threshold and a.kept:
        drop_near_duplicates(a, opts.near_dup_threshold)
    task_type, labels = task_of(a)
    if schema.kind == "classification":
        add_label_prompt(a, labels)
    label_counts = (
        Counter(C.answer_text(i.example).strip() for i in a.kept) if labels else Counter()
    )
    if labels:
        for item in a.kept:
            item.label = C.answer_text(item.example).strip()
    extra: dict = {}
    if tokenizer is not None and a.kept and schema.kind != "prompts":
        extra = check_lengths(a, tokenizer, opts)
    report = finish_report(
        spec,
        a.info,
        a.tally,
        len(a.kept),
        task_type,
        labels,
        label_counts,
        len(a.rejected),
        opts,
        tokenizer is not None,
        extra,
    )
    return a, report


def validate_dataset(spec, opts: PrepareOptions | None = None) -> DataReport:
    """The report alone, nothing written; streams, so memory stays flat on big files."""
    opts = opts or PrepareOptions()
    return validate_stream(spec, opts, _tokenizer(opts))


def _tokenizer(opts: PrepareOptions):
    if not opts.model:
        return None
    from ftagent.tools.data.tokens import load_tokenizer

    return load_tokenizer(opts.model)


def _write_split(path: Path, items: list[Item]) -> str:
    data = b"".join(orjson.dumps(i.example) + b"\n" for i in items)
    write_text(path, data.decode("utf-8"))
    return hashlib.sha256(data).hexdigest()


def prepare_dataset(spec, out_dir: str | Path, opts: PrepareOptions | None = None) -> DataReport:
    """Write train/val/test.jsonl, a `datasets` folder, rejected.jsonl and the report."""
    opts = opts or PrepareOptions()
    out_dir = Path(out_dir)
    tokenizer = _tokenizer(opts)
    a, report = analyze(spec, opts, tokenizer)
    if not a.kept:
        raise DataError(
            f"{spec}: no usable examples after validation; see the checks:\n"
            + "\n".join(f"  {c.name}: {c.count} ({'; '.join(c.examples)})" for c in report.errors)
        )
    fractions = {"val": opts.val_fraction, "test": opts.test_fraction}
    if opts.test_file:
        test_a = read_and_convert(opts.test_file, opts.model_copy(update={"test_file": None}))
        drop_leakage(a, test_a.kept, opts.near_dup_threshold)
        fractions = {"val": opts.val_fraction}
    if len(a.kept) < 3:
        raise DataError(f"{spec}: only {len(a.kept)} usable examples; at least 3 are needed")
    groups = split_groups(a.kept, opts.near_dup_threshold)
    splits = stratified_group_split(a.kept, groups, fractions, opts.seed)
    if opts.test_file:
        splits["test"] = test_a.kept
    out_dir.mkdir(parents=True, exist_ok=True)
    paths, hashes = {}, {}
    for name, items in splits.items():
        paths[name] = str(out_dir / f"{name}.jsonl")
        hashes[name] = _write_split(out_dir / f"{name}.jsonl", items)
    save_datasets_folder(out_dir, {k: [i.example for i in v] for k, v in splits.items()})
    write_text(
        out_dir / "rejected.jsonl", "".join(orjson.dumps(r).decode() + "\n" for r in a.rejected)
    )
    report = report.model_copy(
        update={
            "kept": len(a.kept),
            "checks": a.tally.results(),
            "splits": {k: len(v) for k, v in splits.items()},
            "split_paths": paths,
            "split_sha256": hashes,
        }
    )
    write_json(out_dir / "report.json", report.model_dump())
    write_text(out_dir / "report.md", to_markdown(report))
    return report


def save_datasets_folder(out_dir: Path, splits: dict[str, list[dict]]) -> None:
    """The same splits as a `datasets` folder (Arrow), for load_from_disk users."""
    import shutil
    import tempfile

    from datasets import Dataset, DatasetDict
    from ftagent.tools.atomic import publish_dir

    dd = DatasetDict({k: Dataset.from_list(v) for k, v in splits.items() if v})
    big = sum(len(v) for v in splits.values()) >= PARALLEL_SAVE_ROWS
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".dataset."))
    try:
        # Shards written by WORKERS processes, as the first pass of validation reads.
        dd.save_to_disk(str(tmp), num_proc=WORKERS if big else None)
        publish_dir(tmp, out_dir / "dataset")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def summarize(spec) -> tuple[int, str, list[str]]:
    """(usable examples, task type, labels): the quick look the planner needs."""
    a = read_and_convert(spec, PrepareOptions(near_dup_threshold=None))
    task_type, labels = task_of(a)
    return len(a.kept), task_type, labels
