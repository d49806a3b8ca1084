"""Read raw records from JSONL, JSON, CSV/TSV, Parquet files and saved `datasets`
folders, several files or a glob at once. Every record keeps its file and row number.

JSONL is read line by line with orjson rather than through Arrow's JSON reader: Arrow
aborts the whole file at the first bad line and reports no line number, while a user
needs "line 4,711 is truncated" and the other rows read. Parquet and saved `datasets`
folders go through Arrow in record batches, so memory stays flat on large files.
"""

from __future__ import annotations

import csv
import glob
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import orjson

DATA_SUFFIXES = {".jsonl", ".json", ".csv", ".tsv", ".parquet", ".ndjson"}
MAX_ERROR_TEXT = 120


class ReadError(ValueError):
    """A file that cannot be read at all; the message names it and says what to do."""


@dataclass(slots=True)
class Record:
    source: str
    row: int  # 1-based line (JSONL, CSV) or row index (JSON array, Parquet, datasets)
    data: dict | None  # None when the row could not be parsed
    problem: str = ""  # why it could not be parsed


def expand_paths(spec: str | Path | list) -> list[Path]:
    """Files named by a path, a folder, a glob, or a list of those, in a stable order."""
    specs = spec if isinstance(spec, (list, tuple)) else [spec]
    out: list[Path] = []
    for item in specs:
        item = str(item)
        if any(ch in item for ch in "*?["):
            matches = sorted(Path(p) for p in glob.glob(item, recursive=True))
            if not matches:
                raise ReadError(f"{item}: the pattern matches no file")
            out += [p for p in matches if p.is_file()]
            continue
        path = Path(item)
        if not path.exists():
            raise ReadError(f"{path}: file not found; pass --data with a dataset file")
        if path.is_dir():
            if (path / "dataset_info.json").exists() or (path / "state.json").exists():
                out.append(path)  # a saved `datasets` folder
                continue
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in DATA_SUFFIXES)
            if not found:
                raise ReadError(
                    f"{path}: a folder with no data files (looked for "
                    f"{', '.join(sorted(DATA_SUFFIXES))}) and not a saved datasets folder"
                )
            out += found
        else:
            out.append(path)
    return out


def file_kind(path: Path) -> str:
    if path.is_dir():
        return "datasets"
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        return "jsonl"
    if suffix == ".json":
        return "json"
    if suffix in (".csv", ".tsv"):
        return suffix[1:]
    if suffix == ".parquet":
        return "parquet"
    return _sniff(path)


def _sniff(path: Path) -> str:
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(b"PAR1"):
        return "parquet"
    if b"\x00" in head:
        raise ReadError(f"{path}: looks like a binary file, not JSONL/JSON/CSV/Parquet")
    stripped = head.lstrip()
    if stripped.startswith(b"["):
        return "json"
    if stripped.startswith(b"{"):
        return "jsonl"
    raise ReadError(f"{path}: unknown format; use a .jsonl, .json, .csv, .tsv or .parquet file")


def read_records(spec: str | Path | list) -> Iterator[Record]:
    """Every record of every file, parse problems included (as records with no data)."""
    for path in expand_paths(spec):
        kind = file_kind(path)
        yield from READERS[kind](path)


def _short(text: str) -> str:
    return text if len(text) <= MAX_ERROR_TEXT else text[:MAX_ERROR_TEXT] + "..."


def parse_jsonl_lines(src: str, lines, first_line: int = 1) -> Iterator[Record]:
    """Records from raw JSONL lines (bytes), numbered from `first_line`."""
    for lineno, raw in enumerate(lines, start=first_line):
        raw = raw.rstrip(b"\r\n")  # positions in errors then point into the line itself
        if not raw.strip():
            continue
        try:
            row = orjson.loads(raw)
        except orjson.JSONDecodeError as exc:
            try:
                raw.decode("utf-8")
            except UnicodeDecodeError as uexc:
                yield Record(src, lineno, None, f"invalid UTF-8 at byte {uexc.start}")
                continue
            yield Record(src, lineno, None, f"malformed JSON: {_short(str(exc))}")
            continue
        if not isinstance(row, dict):
            yield Record(src, lineno, None, f"expected a JSON object, got {type(row).__name__}")
            continue
        yield Record(src, lineno, row)


def read_jsonl(path: Path) -> Iterator[Record]:
    with open(path, "rb") as fh:
        yield from parse_jsonl_lines(str(path), fh)


def read_jsonl_range(path: str, start: int, end: int, first_line: int) -> Iterator[Record]:
    """The lines of bytes [start, end) of a JSONL file, `start` and `end` at line starts."""
    with open(path, "rb") as fh:
        fh.seek(start)
        data = fh.read(end - start)
    lines = data.split(b"\n")  # exactly what iterating the file yields, nothing more
    if lines and not lines[-1]:
        lines.pop()
    yield from parse_jsonl_lines(path, lines, first_line)


def jsonl_ranges(path: Path, target_bytes: int) -> Iterator[tuple[str, int, int, int]]:
    """(path, start, end, first line) pieces of about `target_bytes`, cut at line ends;
    a generator, so workers start on the first piece while the next ones are counted."""
    size, pos, line = path.stat().st_size, 0, 1
    with open(path, "rb") as fh:
        while pos < size:
            end = min(size, pos + target_bytes)
            if end < size:
                fh.seek(end)
                end += len(fh.readline())
            fh.seek(pos)
            newlines = fh.read(end - pos).count(b"\n")
            yield (str(path), pos, end, line)
            line += newlines
            pos = end


def read_json(path: Path) -> Iterator[Record]:
    src = str(path)
    raw = path.read_bytes()
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        line = raw[: exc.pos].count(b"\n") + 1 if exc.pos is not None else None
        raise ReadError(f"{path}:{line}: malformed JSON ({_short(exc.msg)})") from None
    if isinstance(data, dict):
        # {"data": [...]} or {"train": [...]}: the one list inside
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise ReadError(f"{path}: expected a JSON array of objects (or JSONL)")
        data = lists[0]
    if not isinstance(data, list):
        raise ReadError(f"{path}: expected a JSON array of objects, got {type(data).__name__}")
    for i, row in enumerate(data, start=1):
        if isinstance(row, dict):
            yield Record(src, i, row)
        else:
            yield Record(src, i, None, f"expected a JSON object, got {type(row).__name__}")


def _read_delimited(path: Path, delimiter: str) -> Iterator[Record]:
    src = str(path)
    try:
        fh = open(path, encoding="utf-8", newline="")
        with fh:
            reader = csv.reader(fh, delimiter=delimiter)
            header = next(reader, None)
            if not header:
                return
            width = len(header)
            for row in reader:
                lineno = reader.line_num
                if not row or all(not c.strip() for c in row):
                    continue
                if len(row) != width:
                    yield Record(
                        src, lineno, None, f"ragged row: {len(row)} fields, the header has {width}"
                    )
                    continue
                yield Record(src, lineno, dict(zip(header, row, strict=True)))
    except UnicodeDecodeError as exc:
        raise ReadError(f"{path}: not valid UTF-8 ({exc.reason}); re-save it as UTF-8") from None
    except csv.Error as exc:
        raise ReadError(f"{path}: unreadable CSV ({exc})") from None


def read_csv(path: Path) -> Iterator[Record]:
    return _read_delimited(path, ",")


def read_tsv(path: Path) -> Iterator[Record]:
    return _read_delimited(path, "\t")


def read_parquet(path: Path) -> Iterator[Record]:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as exc:  # pyarrow raises several types for a broken file
        raise ReadError(f"{path}: unreadable Parquet file ({_short(str(exc))})") from None
    row = 0
    for batch in pf.iter_batches(batch_size=8192):
        for item in batch.to_pylist():
            row += 1
            yield Record(str(path), row, item)


def read_saved_dataset(path: Path) -> Iterator[Record]:
    from datasets import Dataset, DatasetDict, load_from_disk

    try:
        ds = load_from_disk(str(path))
    except Exception as exc:
        raise ReadError(
            f"{path}: not a readable saved datasets folder ({_short(str(exc))})"
        ) from None
    parts = ds.items() if isinstance(ds, DatasetDict) else [("", ds)]
    for split, part in parts:
        assert isinstance(part, Dataset)
        src = f"{path}[{split}]" if split else str(path)
        for i, item in enumerate(part, start=1):
            yield Record(src, i, item)


READERS = {
    "jsonl": read_jsonl,
    "json": read_json,
    "csv": read_csv,
    "tsv": read_tsv,
    "parquet": read_parquet,
    "datasets": read_saved_dataset,
}
