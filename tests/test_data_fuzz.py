"""Broken input never crashes the data tool: a report or a DataError, nothing else, and
nothing written outside the output folder."""

import json

from ftagent.tools.data import DataError, PrepareOptions, prepare_dataset, validate_dataset
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

OPTS = PrepareOptions(near_dup_threshold=None)
FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4)
        | st.dictionaries(
            st.sampled_from(
                [
                    "messages",
                    "role",
                    "content",
                    "text",
                    "label",
                    "prompt",
                    "completion",
                    "chosen",
                    "rejected",
                    "conversations",
                    "from",
                    "value",
                    "instruction",
                    "output",
                ]
            ),
            children,
            max_size=4,
        )
    ),
    max_leaves=12,
)


def outcome(path, tmp_path):
    """Run validate + prepare; return what happened, failing on anything unexpected."""
    before = {p for p in tmp_path.rglob("*")}
    try:
        validate_dataset(path, OPTS)
        prepare_dataset(path, tmp_path / "out", OPTS)
    except DataError as exc:
        assert str(exc)  # an explanation, never an empty error
        return "error"
    finally:
        created = {p for p in tmp_path.rglob("*")} - before
        assert all(tmp_path / "out" in p.parents or p == tmp_path / "out" for p in created)
    return "report"


@FAST
@given(rows=st.lists(json_values, max_size=8))
def test_any_json_lines(tmp_path_factory, rows):
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / "d.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    outcome(path, tmp)


@FAST
@given(
    blob=st.binary(max_size=300),
    suffix=st.sampled_from([".jsonl", ".json", ".csv", ".tsv", ".parquet", ".txt"]),
)
def test_any_bytes(tmp_path_factory, blob, suffix):
    tmp = tmp_path_factory.mktemp("fuzz")
    path = tmp / f"d{suffix}"
    path.write_bytes(blob)
    outcome(path, tmp)


def test_corpus_of_broken_files(tmp_path):
    good = json.dumps(
        {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}
    )
    corpus = {
        "truncated.jsonl": good[:-9],
        "truncated.json": "[" + good + ", " + good[:20],
        "wrong_types.jsonl": "\n".join(
            [
                json.dumps({"messages": "not a list"}),
                json.dumps({"messages": [{"role": 3, "content": ["x"]}]}),
                json.dumps({"messages": [None, 5]}),
                json.dumps({"text": {"a": 1}, "label": [1, 2]}),
            ]
        ),
        "ragged.csv": 'text,label\na,b,c\nd\n"unterminated,x\n',
        "nul.jsonl": "\x00" * 100,
        "scalar.json": "42",
    }
    for name, text in corpus.items():
        (tmp_path / name).write_text(text)
        assert outcome(tmp_path / name, tmp_path) in ("error", "report"), name
    (tmp_path / "empty_dir").mkdir()
    assert outcome(tmp_path / "empty_dir", tmp_path) == "error"


def test_a_50mb_single_line(tmp_path):
    path = tmp_path / "big.jsonl"
    huge = "word " * 10_000_000
    path.write_text(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": huge},
                    {"role": "assistant", "content": "ok"},
                ]
            }
        )
        + "\n"
    )
    report = validate_dataset(path, OPTS)
    assert report.rows_read == 1 and report.kept == 1
