"""The column checks (`fastscan`) against the Python row path: on a file with every kind
of problem, both must give the same report, finding for finding."""

import json

from conftest import DEMO_DATA
from ftagent.tools.data import PrepareOptions, fastscan, validate
from ftagent.tools.data.checks import strip_control
from ftagent.tools.data.fastscan import exact_key, scan_chunk

SYS = {"role": "system", "content": "You are a helpful assistant."}


def chat(user, answer, system=True, **extra):
    msgs = [SYS] if system else []
    return {"messages": msgs + [{"role": "user", "content": user},
                                {"role": "assistant", "content": answer}], **extra}


def line(row) -> bytes:
    return json.dumps(row, ensure_ascii=False).encode() + b"\n"


def messy_lines() -> list[bytes]:
    """Good rows mixed with one or more of every problem the row checks know about."""
    def answer(i):
        return f"answer number {i} with enough words"

    good = [line(chat(f"question {i} about the weather", answer(i))) for i in range(300)]
    bad = [
        # unreadable lines
        b'{"messages": [\n', b'[1, 2]\n', b'"just text"\n', b'{"a": 01}\n', b'{"a": 1,}\n',
        b'\n', b'   \n', b'\x0c\n', b'\xef\xbb\xbf' + line(chat("bom", "bom answer")),
        b'  ' + line(chat("leading space", "fine answer")),
        line(chat("crlf", "crlf answer")).rstrip(b"\n") + b"\r\n",
        line(chat("trailing", "spaces answer")).rstrip(b"\n") + b"   \n",
        b'{"messages": [{"role": "user", "content": "x"}], "score": NaN}\n',
        b'{"messages": [{"role": "user", "content": "x"}], "s": -Infinity}\n',
        b'{"messages": [{"role": "user", "content": "caf\xe9"}]}\n',  # Latin-1, not UTF-8
        b'{"messages": [], "messages": []}\n',
        line(chat("one", "two")).rstrip(b"\n") + b" " + line(chat("three", "four")),
        b'{"messages": [{"role": "user", "content": "\\ud800"}]}\n',
        # fields missing or of the wrong type
        b'{"text": "no messages here"}\n', b'{"messages": null}\n', b'{"messages": "hi"}\n',
        b'{"messages": ["hi"]}\n', b'{"messages": [null]}\n', b'{"messages": []}\n',
        line({"messages": [{"content": "no role"}, {"role": "assistant", "content": "a b"}]}),
        line({"messages": [{"role": None, "content": "x"}, {"role": "assistant", "content": "y"}]}),
        line({"messages": [{"role": 5, "content": "x"}, {"role": "assistant", "content": "yy"}]}),
        line({"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "y"}]}),
        line({"messages": [{"role": "user", "content": ["a"]}]}),
        line({"messages": [{"role": "user"}, {"role": "assistant", "content": "fine"}]}),
        line({"messages": [{"role": "user", "content": None}, SYS]}),
        # roles and their order
        line({"messages": [{"role": "User", "content": "x"},
                           {"role": "assistant", "content": "y"}]}),
        line({"messages": [{"role": "bot", "content": "x"}]}),
        line({"messages": [{"role": "user", "content": "x"}, SYS,
                           {"role": "assistant", "content": "yes"}]}),
        line({"messages": [{"role": "assistant", "content": "x"}]}),
        line({"messages": [SYS, {"role": "assistant", "content": "first"}]}),
        line({"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"},
                           {"role": "assistant", "content": "c c"}]}),
        line({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                           {"role": "assistant", "content": "c c"}]}),
        line({"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                           {"role": "user", "content": "more"}]}),
        line({"messages": [SYS]}),
        line({"messages": [SYS] + [{"role": r, "content": f"turn {i} of a long chat"}
                                   for i in range(20) for r in ("user", "assistant")]}),
        line({"messages": [{"role": r, "content": f"turn {i} of a longer chat"}
                           for i in range(20) for r in ("user", "assistant")]}),
        line({"messages": [{"role": "user", "content": "weather?"},
                           {"role": "assistant", "content": "", "tool_calls": [{"id": "1"}]},
                           {"role": "tool", "content": "sunny"}, {"role": "tool", "content": "22"},
                           {"role": "assistant", "content": "Sunny, 22 degrees."}]}),
        line({"messages": [{"role": "user", "content": "w"}, {"role": "assistant", "content": "ok",
                                                               "tool_calls": []}]}),
        line({"messages": [{"role": "user", "content": "w", "name": "ann"},
                           {"role": "assistant", "content": "extra keys", "weight": 1}]}),
        # empty and short texts
        line(chat("", "empty question")), line(chat("   ", "blank question")),
        line(chat("nbsp", "\u00a0\u2003")), line(chat("q", "")), line(chat("q", "\u3000k\u3000")),
        line(chat("q", "k")), line(chat("q", " k ")), line(chat("q", "ok")),
        line(chat("\x1c", "file separator is space to Python")),
        # encoding and personal data
        line(chat("write to jane.doe@example.com please", "sure thing, will do")),
        line(chat("call me at 555 123 4567", "will call you soon")),
        line(chat("card 4111 1111 1111 1111", "card noted for you")),
        line(chat("key AKIAABCDEFGHIJKLMNOP", "key noted for you")),
        line(chat("the cafÃ© is open", "mojibake answer here")),
        line(chat("ctrl \x01 char", "control answer here")),
        line(chat("arabic digits ١٢٣ ٤٥٦", "unicode digits answer")),
        line(chat("nul \\u0000 escaped", "escaped nul answer")).replace(b"\\\\u0000", b"\\u0000"),
        line(chat("ends 123", "456 starts the answer")),
        line(chat("NaN in text and Infinity", "text is fine here")),
        line(chat("tab\there and \"quotes\" and \\ slash", "escapes answer here")),
        # duplicates, exact and in disguise
        good[3], good[3], line(chat("question 4 about the weather", answer(4), id=7)),
        b'{"messages": [{"content": "You are a helpful assistant.", "role": "system"}, '
        b'{"content": "question 5 about the weather", "role": "user"}, '
        b'{"content": "' + answer(5).encode() + b'", "role": "assistant"}]}\n',
        line(chat("question 6 about the w\u00e9ather", answer(6))),
        line(chat("question 6 about the w\u00e9ather", answer(6))).replace(
            "\u00e9".encode(), b"\\u00e9"),
        line(chat("question 7 about the weather\x7f", answer(7))),
        line(chat("dup of a slow row \x01", "control answer here")),
        line(chat("dup of a slow row ", "control answer here")),
    ]
    out = []
    for i, g in enumerate(good):
        out.append(g)
        if i % 3 == 0 and bad:
            out.append(bad.pop(0))
    return out + bad


def reports(path, monkeypatch, chunk=4096):
    """(Python path, column path) reports; the column path must have cleared most rows."""
    opts = PrepareOptions(near_dup_threshold=0.85)
    slow = validate.validate_stream(path, opts, workers=1, fast=False)
    monkeypatch.setattr(fastscan, "CHUNK_BYTES", chunk)  # many chunks in a small file
    cleared = []

    def counted(data, first_line):
        out = scan_chunk(data, first_line)
        cleared.append(len(out.lines))
        return out

    monkeypatch.setattr(validate, "scan_chunk", counted)
    fast = validate.validate_stream(path, opts, workers=1, fast=True)
    assert sum(cleared) > 0.7 * slow.rows_read
    return slow.model_dump(), fast.model_dump()


def test_fast_path_gives_the_python_report(tmp_path, monkeypatch):
    path = tmp_path / "messy.jsonl"
    path.write_bytes(b"".join(messy_lines()))
    slow, fast = reports(path, monkeypatch)
    assert fast == slow
    found = {c["name"]: c["count"] for c in slow["checks"] if c["count"]}
    for check in ("unparsable", "invalid_utf8", "missing_field", "bad_role", "role_order",
                  "empty_field", "short_output", "control_chars", "mojibake", "pii",
                  "exact_duplicate"):
        assert found.get(check), check


def test_fast_path_counts_labels_as_the_python_path(tmp_path, monkeypatch):
    """Short answers read as a label set: the counts are taken over the rows kept after
    exact dedup, whichever path cleared them."""
    rows = [line(chat(f"question {i} about the weather", ("yes", "no", "maybe")[i % 3]))
            for i in range(300)]
    rows += [rows[4], rows[5], b'{"messages": [\n', line(chat("mail a@b.co", "yes")),
             line(chat("ctrl \x01", "no")), line(chat("ctrl ", "no"))]
    path = tmp_path / "labels.jsonl"
    path.write_bytes(b"".join(rows))
    slow, fast = reports(path, monkeypatch)
    assert fast == slow
    assert slow["task_type"] == "classification" and slow["label_counts"]["no"] == 101


def test_fast_path_gives_the_python_report_over_several_files(tmp_path, monkeypatch):
    lines = messy_lines()
    (tmp_path / "a.jsonl").write_bytes(b"".join(lines[::2]))
    (tmp_path / "b.jsonl").write_bytes(b"".join(lines[1::2]) + DEMO_DATA.read_bytes())
    slow, fast = reports(str(tmp_path / "*.jsonl"), monkeypatch, chunk=1 << 20)
    assert fast == slow
    assert any(":" in ex for c in slow["checks"] for ex in c["examples"])


def test_parallel_fast_path_gives_the_same_report(tmp_path, monkeypatch):
    path = tmp_path / "big.jsonl"
    path.write_bytes(b"".join(messy_lines() * 3))
    opts = PrepareOptions(near_dup_threshold=None)
    one = validate.validate_stream(path, opts, workers=1, fast=False)
    monkeypatch.setattr(validate, "PARALLEL_MIN_BYTES", 4096)  # cut it in pieces
    two = validate.validate_stream(path, opts, workers=2, fast=True)
    assert one.model_dump() == two.model_dump()


def test_rows_the_column_checks_clear_have_no_finding_on_the_python_path():
    from ftagent.tools.data.readers import parse_jsonl_lines
    from ftagent.tools.data.report import Tally
    from ftagent.tools.data.rows import iter_checked
    from ftagent.tools.data.schema import Schema

    data = b"".join(messy_lines())
    chunk = scan_chunk(data, 1)
    assert len(chunk.lines) > 250 and len(chunk.slow) > 50
    raw = data.split(b"\n")
    for n, key in zip(chunk.lines, chunk.keys, strict=True):
        tally, stats, rejected = Tally(), {"rows": 0, "converted": 0}, []
        records = parse_jsonl_lines("x.jsonl", [raw[n - 1]], n)
        items = list(iter_checked(records, Schema("messages"), True,
                                  lambda *a, out=rejected: out.append(a), tally, stats))
        assert len(items) == 1 and not rejected and not tally.counts, raw[n - 1]
        assert exact_key(items[0].example) == key


def test_exact_keys_agree_between_forms():
    ex = chat("hi \x01", "there")
    plain = exact_key(strip_control(ex))
    assert plain == exact_key(chat("hi ", "there"))
    assert plain != exact_key(chat("hi", " there"))
    tool = {"messages": [{"role": "user", "content": "x"},
                         {"role": "assistant", "content": "", "tool_calls": [{"id": 1}]}]}
    assert exact_key(tool) == exact_key(json.loads(json.dumps(tool)))


def test_pieces_are_whole_lines_with_their_numbers(tmp_path):
    path = tmp_path / "lines.jsonl"
    lines = [b"x" * (i * 7 % 50) + b"\n" for i in range(200)]
    path.write_bytes(b"".join(lines))
    start = len(lines[0]) + len(lines[1])  # a range from line 3 on
    pieces = list(fastscan.read_chunks(str(path), start, path.stat().st_size, 3, size=16))
    assert b"".join(p for p, _ in pieces) == b"".join(lines[2:])
    for piece, first in pieces:
        assert piece.endswith(b"\n") and piece.split(b"\n")[0] + b"\n" == lines[first - 1]
