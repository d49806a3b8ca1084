"""The per-row pass that preparation and streaming validation both make: open the
input and detect its schema from the first rows, then convert each record and run the
row checks. One implementation, so both paths drop and flag exactly the same rows."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import orjson
from ftagent.tools.data import checks as C
from ftagent.tools.data.readers import ReadError, expand_paths, read_records
from ftagent.tools.data.report import Tally
from ftagent.tools.data.schema import (
    RowError,
    convert,
    detect_schema,
    schema_from_override,
)
from pydantic import BaseModel

SAMPLE_FOR_DETECTION = 200


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
    """A converted example with where it came from (`ref`), so every later finding can
    name the input row."""

    ref: str
    example: dict
    raw: dict | None
    label: str | None = None


def row_ref(source: str, row: int, single: bool) -> str:
    return f"line {row}" if single else f"{Path(source).name}:{row}"


def fingerprint(example: dict) -> bytes:
    """Exact duplicates are found by this hash; sorted keys so field order hides no copy."""
    return hashlib.blake2b(
        orjson.dumps(example, option=orjson.OPT_SORT_KEYS), digest_size=16
    ).digest()


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
        ref = row_ref(rec.source, rec.row, single)
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
