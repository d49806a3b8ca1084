"""The vectorised first pass for JSONL chat rows (`messages` schema).

pyarrow parses a piece of the file into columns and pyarrow.compute checks whole columns
at once: roles and their order, empty contents, the encoding and PII pre-scans, short
answers. A row is only cleared here when these prove that the Python row path would find
nothing in it; every other row goes, as its raw line, to that path (`rows.iter_checked`),
which stays the reference: every finding, with its line, field and message, comes from
there. Lines Arrow would read differently from orjson (NaN and Infinity, a byte-order
mark, bytes around the object, lines Arrow refuses) take the same route, so the report
does not depend on which path a row took.
"""

from __future__ import annotations

import io
import re
import sys
from dataclasses import dataclass, field

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.json as pj
from ftagent.tools.data import checks as C
from ftagent.tools.data.dataset_checks import MAX_LABEL_WORDS
from xxhash import xxh3_64_intdigest

CHUNK_BYTES = 8 << 20  # one Arrow parse; a line Arrow refuses costs a re-parse of this
MAX_REPARSES = 16  # past this many refused lines the chunk is read in Python

ROLE_CODES = {"system": "s", "user": "u", "assistant": "a", "tool": "t"}
ROLE_INDEX = {role: i for i, role in enumerate(ROLE_CODES)}
MAX_MESSAGES = 31  # a longer chat's role sequence does not fit a 64-bit seed: Python reads it
_CODE_TABLE = np.frombuffer(b"suatx", dtype=np.uint8)  # index_in position -> code; x: other
# structure_problem's rules as a pattern over the role codes: an optional system message
# first, then user, ..., assistant (two user or two assistant turns in a row are refused
# separately: RE2 has no look-ahead).
CLEAN_ROLES = "^s?u[uat]*a$"


def _re2_class(chars: str) -> str:
    return "".join(f"\\x{{{ord(c):x}}}" for c in chars)


# What str.strip() removes: a content is non-empty after strip() iff it holds one other.
_WS = _re2_class("".join(ch for ch in map(chr, range(sys.maxunicode + 1)) if ch.isspace()))
NOT_SPACE = f"[^{_WS}]"
TWO_NOT_SPACE = f"(?s)[^{_WS}].*[^{_WS}]"  # strip() leaves 2+ characters
# What text_findings could flag, over the contents joined: one RE2 pattern that matches
# at least what each of its checks matches (look-arounds and \b dropped, \pN for every
# Unicode digit Python's \d takes, the whitespace class for Python's \s), so a row it
# does not match has no finding. Finer than checks._suspicious, whose digit test sends
# prose with numbers in it to the full PII scan.
_D = r"\pN"
TEXT_FINDINGS = "|".join(
    [
        r"[\x00-\x08\x0b\x0c\x0e-\x1d\x1f\x7f]",  # control_chars (0x1e: the joins)
        "Ã|â€|Â",  # mojibake's first characters
        "@",  # email
        C.SECRET.pattern,
        # card number; a row without one is also one where PHONE runs on the text as is
        rf"(?:{_D}[ -]?){{12,18}}{_D}",
        # phone number: without its optional country code, which only narrows it
        rf"(?:\({_D}{{2,4}}\)[{_WS}.-]?|{_D}{{2,4}}[{_WS}.-]){_D}{{3,4}}[{_WS}.-]{_D}{{3,4}}",
    ]
)
# Byte patterns Arrow reads as numbers and orjson refuses: lines with them go to Python
# when the chunk has a float column to hold them.
ARROW_ONLY = (b"NaN", b"Inf")


def role_seed(codes: list[int]) -> int:
    """A role sequence (indices into ROLE_CODES) as one number, two bits a role under a
    leading 1: distinct sequences give distinct seeds for the key's hash."""
    return sum(c << (2 * i) for i, c in enumerate(codes)) + (1 << (2 * len(codes)))


def plain_key(messages) -> tuple[int, bytes] | None:
    """(seed, bytes) an exact-duplicate key is hashed from, for a chat example of roles and
    text only: the role sequence as the seed, the contents joined by 0x1e (which cannot be
    in a passing row's text: control characters are stripped). None for any other shape."""
    codes, texts = [], []
    for m in messages:
        role, content = m.get("role"), m.get("content")
        if len(m) != 2 or role not in ROLE_INDEX or type(content) is not str or "\x1e" in content:
            return None
        codes.append(ROLE_INDEX[role])
        texts.append(content)
    if not codes or len(codes) > MAX_MESSAGES:
        return None
    return role_seed(codes), "\x1e".join(texts).encode()


def exact_key(example: dict) -> int:
    """The 64-bit key exact duplicates are found by, on either path: `plain_key` for plain
    chat examples, sorted-key JSON (seed 0, which no role sequence gives) for any other."""
    msgs = example.get("messages") if len(example) == 1 else None
    key = plain_key(msgs) if isinstance(msgs, list) else None
    if key is None:
        return xxh3_64_intdigest(orjson.dumps(example, option=orjson.OPT_SORT_KEYS))
    return xxh3_64_intdigest(key[1], key[0])


@dataclass
class FastChunk:
    """One chunk's outcome: rows cleared by the column checks (in line order) and the
    lines the Python path must read (line number, raw bytes)."""

    lines: list[int] = field(default_factory=list)
    keys: list[int] = field(default_factory=list)  # 64-bit exact-duplicate keys
    answers: list[str] | None = field(default_factory=list)  # None: not a label set
    slow: list[tuple[int, bytes]] = field(default_factory=list)


def read_chunks(path: str, start: int, end: int, first_line: int, size: int | None = None):
    """(bytes, first line number) pieces of bytes [start, end) of a file (both at line
    starts), about `size` each and cut at line ends: one piece in memory at a time."""
    size = size or CHUNK_BYTES
    line, rest = first_line, b""
    with open(path, "rb") as fh:
        fh.seek(start)
        pos = start
        while pos < end or rest:
            block = fh.read(min(size, end - pos)) if pos < end else b""
            pos += len(block)
            if not block:  # the file is shorter than when it was cut in ranges
                end = pos
            data = rest + block
            cut = data.rfind(b"\n") + 1 if pos < end else len(data)
            if cut == 0:  # a line longer than `size`: read on
                rest = data
                continue
            piece, rest = data[:cut], data[cut:]
            yield piece, line
            line += piece.count(b"\n")


def scan_chunk(data: bytes, first_line: int) -> FastChunk:
    """Clear what the column checks can in `data` (whole lines); the rest is `slow`."""
    out = FastChunk()
    buf = np.frombuffer(data, dtype=np.uint8)
    ends = np.flatnonzero(buf == 10)
    if len(data) and data[-1:] != b"\n":
        ends = np.append(ends, len(data))
    starts = np.concatenate(([0], ends[:-1] + 1)).astype(np.int64)
    n = len(ends)
    if n == 0:
        return out
    # Lines that are not exactly one object (blank, a BOM, bytes around it, a CR end)
    # and lines that are not UTF-8: Python decides about them.
    last = np.maximum(ends - 1, 0)
    shaped = (ends > starts) & (buf[np.minimum(starts, len(buf) - 1)] == 123) & (buf[last] == 125)
    pos = 0
    while pos < len(data):
        try:
            data[pos:].decode("utf-8")
            break
        except UnicodeDecodeError as exc:
            bad = int(np.searchsorted(ends, pos + exc.start))
            shaped[bad] = False
            pos = int(ends[bad]) + 1
    table, cand = _parse_lines(data, starts, ends, np.flatnonzero(shaped))
    if table is None:
        _all_slow(out, data, starts, ends, first_line, np.arange(n))
        return out
    checked = _clean_rows(table)
    if checked is None:
        _all_slow(out, data, starts, ends, first_line, np.arange(n))
        return out
    ok, keys, answers = checked
    if _has_float(table.schema):  # where NaN or Infinity could have been read
        arrow_only = np.zeros(len(cand), dtype=bool)
        for token in ARROW_ONLY:
            pos = data.find(token)
            while pos >= 0:
                line = np.searchsorted(ends, pos)
                row = np.searchsorted(cand, line)
                arrow_only[row] = row < len(cand) and cand[row] == line
                pos = data.find(token, pos + 1)
        keep = ~arrow_only[ok]  # aligned with keys and answers
        keys = [k for k, kept in zip(keys, keep, strict=True) if kept]
        if answers is not None:
            answers = [a for a, kept in zip(answers, keep, strict=True) if kept]
        ok &= ~arrow_only
    fast_idx = cand[ok]
    slow_mask = np.ones(n, dtype=bool)
    slow_mask[fast_idx] = False
    _all_slow(out, data, starts, ends, first_line, np.flatnonzero(slow_mask))
    out.lines = (fast_idx + first_line).tolist()
    out.keys, out.answers = keys, answers
    return out


def _has_float(t) -> bool:
    if isinstance(t, pa.Schema):
        return any(_has_float(f.type) for f in t)
    if pa.types.is_floating(t):
        return True
    if pa.types.is_struct(t):
        return any(_has_float(t.field(i).type) for i in range(t.num_fields))
    if pa.types.is_list(t):
        return _has_float(t.value_type)
    return False


def _all_slow(out: FastChunk, data: bytes, starts, ends, first_line: int, idx) -> None:
    for i in idx.tolist():
        out.slow.append((first_line + i, data[starts[i] : ends[i]]))


def _parse_lines(data: bytes, starts, ends, cand):
    """(table, the lines it holds): lines Arrow refuses and lines that hold more than one
    object are left out, one re-parse each; (None, _) when that does not settle it."""
    for _ in range(MAX_REPARSES):
        if not len(cand):
            return None, cand
        try:
            table = _parse(_join_lines(data, starts, ends, cand))
        except pa.ArrowInvalid as exc:
            bad = re.search(r" in row (\d+)$", str(exc))
            row = int(bad.group(1)) if bad else len(cand)
            if row >= len(cand):
                return None, cand
            # Arrow counts objects, not lines: a line with two before it shifts the count.
            odd = _odd_lines(data, starts, ends, cand[: row + 1])
            cand = np.setdiff1d(cand, odd) if odd else np.delete(cand, row)
            continue
        if table.num_rows == len(cand):
            return table, cand
        cand = np.setdiff1d(cand, _odd_lines(data, starts, ends, cand))
    return None, cand


def _odd_lines(data: bytes, starts, ends, cand) -> list[int]:
    """The lines among `cand` that Arrow refuses or reads as more than one row, found by
    halving, since a count that does not add up does not say where."""
    try:
        if _parse(_join_lines(data, starts, ends, cand)).num_rows == len(cand):
            return []
    except pa.ArrowInvalid:
        pass
    if len(cand) == 1:
        return [int(cand[0])]
    half = len(cand) // 2
    return _odd_lines(data, starts, ends, cand[:half]) + _odd_lines(
        data, starts, ends, cand[half:]
    )


def _join_lines(data: bytes, starts, ends, cand) -> bytes:
    """The candidate lines as one buffer, copied in runs of consecutive lines."""
    if len(cand) == len(starts):
        return data
    breaks = np.flatnonzero(np.diff(cand) != 1)
    run_first = np.concatenate(([cand[0]], cand[breaks + 1]))
    run_last = np.concatenate((cand[breaks], [cand[-1]]))
    pieces = [data[starts[a] : ends[b]] + b"\n" for a, b in zip(run_first, run_last, strict=True)]
    return b"".join(pieces)


def _parse(data: bytes) -> pa.Table:
    opts = pj.ReadOptions(use_threads=False, block_size=len(data) + 1)
    return pj.read_json(io.BytesIO(data), read_options=opts)


def _clean_rows(table: pa.Table) -> tuple[np.ndarray, list[int], list[str] | None] | None:
    """(mask of the rows every row check passes for sure, their exact-duplicate keys, their
    answers or None); None when the chunk's shape is not plain chat (then it is all read
    in Python)."""
    if "messages" not in table.column_names:
        return None
    col = table.column("messages").combine_chunks()
    if not pa.types.is_list(col.type) or not pa.types.is_struct(col.type.value_type):
        return None
    struct_type = col.type.value_type
    names = {struct_type.field(i).name for i in range(struct_type.num_fields)}
    if (
        "role" not in names
        or "content" not in names
        or struct_type.field("role").type != pa.string()
        or struct_type.field("content").type != pa.string()
    ):
        return None
    msgs = col.flatten()  # the messages of the non-null rows, in order
    parents = pc.list_parent_indices(col).to_numpy()
    counts = pc.list_value_length(col).fill_null(0).to_numpy()
    roles = msgs.field("role")
    contents = msgs.field("content")
    ok = col.is_valid().to_numpy(zero_copy_only=False) & (counts > 0) & (counts <= MAX_MESSAGES)
    if not len(contents):
        return ok, [], []
    # Per message: a known role, some text, no tool calls (Python keeps those).
    good = pc.and_(pc.is_valid(msgs), pc.is_valid(roles))
    good = pc.and_(good, pc.fill_null(pc.match_substring_regex(contents, NOT_SPACE), False))
    if "tool_calls" in names:
        good = pc.and_(good, pc.is_null(msgs.field("tool_calls")))
    ok[parents[~good.to_numpy(zero_copy_only=False)]] = False
    # Role order, as a string of codes per row built on the list offsets.
    idx = pc.index_in(roles, value_set=pa.array(list(ROLE_CODES))).fill_null(4).to_numpy()
    offsets = np.concatenate(([0], np.cumsum(counts))).astype(np.int32)
    seq = pa.StringArray.from_buffers(
        len(col), pa.py_buffer(offsets), pa.py_buffer(_CODE_TABLE[idx])
    )
    order = pc.and_(
        pc.match_substring_regex(seq, CLEAN_ROLES),
        pc.invert(pc.or_(pc.match_substring(seq, "uu"), pc.match_substring(seq, "aa"))),
    )
    ok &= order.to_numpy(zero_copy_only=False)
    # The answer: 2+ characters after strip() (short_output otherwise).
    last = np.maximum(offsets[1:] - 1, 0)
    two = pc.fill_null(pc.match_substring_regex(contents, TWO_NOT_SPACE), False)
    ok &= two.to_numpy(zero_copy_only=False)[last]
    # The encoding and PII pre-scan, over the contents joined by 0x1e (whitespace to
    # Python's \s, as the newline text_findings joins them by); a content that holds
    # 0x1e itself shows in the count.
    rebuilt = pa.ListArray.from_arrays(pa.array(offsets), contents.fill_null(""))
    joined = pc.binary_join(rebuilt, "\x1e")
    ok &= pc.count_substring(joined, "\x1e").to_numpy(zero_copy_only=False) == counts - 1
    found = pc.fill_null(pc.match_substring_regex(joined, TEXT_FINDINGS), True)
    ok &= ~found.to_numpy(zero_copy_only=False)
    rows = np.flatnonzero(ok)
    seeds = _role_seeds(idx, offsets, counts)[rows].tolist()
    texts = joined.filter(pa.array(ok)).cast(pa.binary()).to_pylist()
    keys = [xxh3_64_intdigest(t, seed) for t, seed in zip(texts, seeds, strict=True)]
    return ok, keys, _answers(contents, last[rows])


def _role_seeds(idx: np.ndarray, offsets: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """Per row, the role sequence as a number (`role_seed`), from the role indices."""
    pos = np.arange(len(idx)) - np.repeat(offsets[:-1], counts)
    vals = idx.astype(np.uint64) << (2 * np.minimum(pos, MAX_MESSAGES)).astype(np.uint64)
    # Row sums as differences of a running sum; it wraps past 2**64, the differences not.
    total = np.concatenate(([np.uint64(0)], np.cumsum(vals, dtype=np.uint64)))
    sums = total[offsets[1:]] - total[offsets[:-1]]
    return sums + (np.uint64(1) << (2 * np.minimum(counts, MAX_MESSAGES)).astype(np.uint64))


def _answers(contents: pa.StringArray, last: np.ndarray) -> list[str] | None:
    """The cleared rows' answers while they may be labels; None once one is too long
    (looked for in the first rows first: in most data the first answer settles it)."""
    out: list[str] = []
    for part in (last[:64], last[64:]):
        for text in contents.take(pa.array(part, type=pa.int64())).to_pylist():
            text = text.strip()
            if len(text.split()) > MAX_LABEL_WORDS:
                return None
            out.append(text)
    return out
