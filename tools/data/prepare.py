"""data_prep's tool: read, detect the schema, convert, check, fix on a copy, split and
report. The input files are only ever read; every dropped row goes to rejected.jsonl."""

from __future__ import annotations

import hashlib
import random
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

import orjson
from ftagent.tools.atomic import write_json, write_text
from ftagent.tools.data import checks as C
from ftagent.tools.data.readers import ReadError, expand_paths, read_records
from ftagent.tools.data.report import DataReport, Tally, to_markdown
from ftagent.tools.data.schema import (
    RowError,
    convert,
    detect_schema,
    label_prompt,
    schema_from_override,
)
from pydantic import BaseModel

SAMPLE_FOR_DETECTION = 200
# Short, repeated answers read as a label set (e.g. intents in chat form).
MAX_LABELS, MAX_LABEL_WORDS = 50, 4
MIN_EXAMPLES = {"classification": 200, "generation": 100, "preference": 100}
IMBALANCE = 10.0


class PrepareOptions(BaseModel):
    schema_name: str | None = None  # override auto-detection
    columns: dict[str, str] = {}  # canonical role -> source column, with schema_name
    model: str | None = None  # tokenizer for token lengths and the loss preview
    max_length: int = 1024
    overlong: Literal["drop", "truncate"] = "drop"
    near_dup_threshold: float | None = 0.85  # None turns near-dup detection off
    seed: int = 42
    val_fraction: float = 0.1
    test_fraction: float = 0.1
    test_file: str | None = None  # a user-supplied test set is used as is
    preview: int = 3


class DataError(ValueError):
    """Input that cannot be used at all (no file, no rows, unknown schema)."""


@dataclass
class Item:
    ref: str
    example: dict
    raw: dict | None
    label: str | None = None


@dataclass
class Analysis:
    kept: list[Item]
    rejected: list[dict] = field(default_factory=list)
    tally: Tally = field(default_factory=Tally)
    info: dict = field(default_factory=dict)


def _ref(source: str, row: int, single: bool) -> str:
    return f"line {row}" if single else f"{Path(source).name}:{row}"


def fingerprint(example: dict) -> bytes:
    return hashlib.blake2b(
        orjson.dumps(example, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).digest()


def _reject(a: Analysis, item_ref: str, check: str, where: str, raw) -> None:
    a.tally.add(check, f"{item_ref}{': ' + where if where else ''}")
    a.rejected.append({"ref": item_ref, "check": check, "detail": where, "record": raw})


def files_sha256(spec) -> str:
    h = hashlib.sha256()
    for path in expand_paths(spec):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def open_records(spec, opts: PrepareOptions):
    """(schema, votes, files, records factory): detection looks at the first rows only,
    and the factory re-reads the files, so nothing holds the whole dataset."""
    try:
        files = expand_paths(spec)
        sample, seen_any = [], False
        for rec in read_records(files):
            seen_any = True
            if rec.data is not None:
                sample.append(rec.data)
                if len(sample) >= SAMPLE_FOR_DETECTION:
                    break
    except ReadError as exc:
        raise DataError(str(exc)) from None
    if not seen_any:
        raise DataError(f"{spec}: the file is empty: it holds no records")
    if opts.schema_name:
        try:
            schema = schema_from_override(opts.schema_name, opts.columns, sample)
        except ValueError as exc:
            raise DataError(f"{spec}: {exc}") from None
        votes: dict[str, int] = {}
    else:
        schema, votes = detect_schema(sample)
    if schema is None:
        keys = sorted({k for row in sample[:20] for k in row})
        raise DataError(
            f"{spec}: cannot tell the schema (fields seen: {', '.join(keys) or 'none'}); "
            "pass --schema (messages, sharegpt, alpaca, prompt_completion, preference, "
            "classification, ...) and --column role=field to map fields"
        )
    return schema, votes, files, lambda: read_records(files)


def iter_checked(
    records, schema, single: bool, reject, tally: Tally, stats: dict, light: bool = False
):
    """Convert records and run the row checks; yield the examples that pass. `light`
    skips the checks that never drop a row (text findings), for a second pass that only
    needs the same rows again."""
    for rec in records:
        stats["rows"] += 1
        ref = _ref(rec.source, rec.row, single)
        if rec.data is None:
            check = "invalid_utf8" if rec.problem.startswith("invalid UTF-8") else "unparsable"
            reject(ref, check, rec.problem, None)
            continue
        try:
            examples = convert(rec.data, schema)
        except RowError as exc:
            reject(ref, "missing_field", f"{exc.field} {exc}", rec.data)
            continue
        for ex in examples:
            stats["converted"] += 1
            if schema.kind == "preference":
                problem = C.preference_problem(ex)
            elif schema.kind != "prompts":
                problem = C.structure_problem(ex["messages"])
            else:
                problem = None
            if problem:
                reject(ref, problem.check, f"{problem.field} {problem.detail}".strip(), rec.data)
                continue
            if light:
                yield Item(ref, ex, rec.data, None)
                continue
            for f in C.text_findings(ex):
                tally.add(f.check, f"{ref}: {f.field}" + (f" ({f.detail})" if f.detail else ""))
                if f.check == "control_chars":
                    C.strip_control(ex)
            if schema.kind == "chat" and len(C.answer_text(ex).strip()) < C.MIN_ANSWER_CHARS:
                tally.add("short_output", f"{ref}: answer {C.answer_text(ex)!r}")
            label = C.answer_text(ex).strip() if schema.kind == "classification" else None
            yield Item(ref, ex, rec.data, label)


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


def previews_checked(tokenizer, examples: list[dict], opts: PrepareOptions, tally: Tally):
    """Loss previews of the first examples; masking mistakes they show are findings."""
    from ftagent.tools.data.tokens import loss_preview, mask_problem

    previews = [loss_preview(tokenizer, ex, opts.max_length) for ex in examples]
    for n, p in enumerate(previews, start=1):
        problem = mask_problem(p)
        if problem:
            tally.add("loss_mask", f"preview example {n}: {problem}")
    return previews


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


def finish_report(
    spec,
    info: dict,
    tally: Tally,
    kept: int,
    task_type: str,
    labels: list[str],
    label_counts: Counter,
    dropped: int,
    opts: PrepareOptions,
    counted_tokens: bool,
    extra: dict,
) -> DataReport:
    """Dataset-level checks (balance, size) and the report, shared by every path."""
    schema = info["schema"]
    warnings = []
    if label_counts and len(label_counts) > 1 and schema.kind != "multiple_choice":
        most, least = label_counts.most_common()[0], label_counts.most_common()[-1]
        if most[1] > IMBALANCE * least[1]:
            tally.add("label_imbalance", f"{most[0]} {most[1]} vs {least[0]} {least[1]}")
    need = MIN_EXAMPLES.get(task_type, 100)
    if kept < need:
        tally.add("too_little_data", f"{kept} usable examples, {need}+ advised for {task_type}")
        warnings.append(
            f"only {kept} usable examples; {need}+ are advised for {task_type} "
            "(few-shot prompting may be enough)"
        )
    if dropped:
        warnings.append(f"{dropped} rows were dropped; see rejected.jsonl")
    return DataReport(
        source=", ".join(str(p) for p in expand_paths(spec)),
        sha256=info.get("sha256") or files_sha256(spec),
        schema_name=schema.name,
        schema_detail=schema.describe(),
        kind=schema.kind,
        column_mapping=schema.columns,
        schema_votes=info["votes"],
        rows_read=info["rows"],
        examples_converted=info["converted"],
        kept=kept,
        checks=tally.results(),
        task_type=task_type,
        labels=labels,
        label_counts=dict(label_counts),
        max_length=opts.max_length if counted_tokens else None,
        seed=opts.seed,
        warnings=warnings,
        **extra,
    )


def validate_dataset(spec, opts: PrepareOptions | None = None) -> DataReport:
    """The report alone, nothing written; streams, so memory stays flat on big files."""
    from ftagent.tools.data.validate import validate_stream

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
    tmp = Path(tempfile.mkdtemp(dir=out_dir, prefix=".dataset."))
    try:
        dd.save_to_disk(str(tmp))
        publish_dir(tmp, out_dir / "dataset")
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def summarize(spec) -> tuple[int, str, list[str]]:
    """(usable examples, task type, labels): the quick look the planner needs."""
    a = read_and_convert(spec, PrepareOptions(near_dup_threshold=None))
    task_type, labels = task_of(a)
    return len(a.kept), task_type, labels
