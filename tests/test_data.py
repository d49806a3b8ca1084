import json

import pytest
from conftest import write_jsonl

from tools.data import DataError, load_examples, prepare_dataset
from tools.data.split import seeded_split
from tools.data.validate import validate_examples


def chat(user: str, answer: str) -> dict:
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    }


def test_formats_are_normalised_to_chat(tmp_path):
    path = write_jsonl(
        tmp_path / "mixed.jsonl",
        [
            chat("hi", "hello"),
            {"instruction": "Translate", "input": "bonjour", "output": "hello"},
            {"prompt": "2+2?", "completion": "4"},
        ],
    )
    data = load_examples(path)
    assert data.formats == {"messages": 1, "alpaca": 1, "prompt_completion": 1}
    assert data.examples[1].messages[0] == {"role": "user", "content": "Translate\n\nbonjour"}
    assert data.examples[2].messages[-1] == {"role": "assistant", "content": "4"}


def test_malformed_json_names_file_and_line(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text(json.dumps(chat("a", "b")) + "\n" + '{"messages": [\n', encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_examples(path)
    assert err.value.line == 2
    assert f"{path}:2" in str(err.value) and "malformed JSON" in str(err.value)


def test_missing_field_names_the_field(tmp_path):
    path = write_jsonl(tmp_path / "f.jsonl", [chat("a", "b"), {"messages": [{"role": "user"}]}])
    with pytest.raises(DataError, match=r"f.jsonl:2: field 'messages\[0\]'"):
        load_examples(path)


def test_empty_and_missing_files(tmp_path):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n", encoding="utf-8")
    with pytest.raises(DataError, match="empty"):
        load_examples(empty)
    with pytest.raises(DataError, match="file not found"):
        load_examples(tmp_path / "nope.jsonl")


def test_validation_drops_and_reports_each_problem(tmp_path):
    rows = [
        chat("q1", "a1"),
        chat("q1", "a1"),  # exact duplicate
        chat("q2", "  "),  # empty answer
        {"messages": [{"role": "user", "content": "q3"}, {"role": "bot", "content": "x"}]},
        {"messages": [{"role": "user", "content": "q4"}]},  # no assistant turn
        chat("q5", "a5"),
    ]
    kept, result = validate_examples(
        load_examples(write_jsonl(tmp_path / "v.jsonl", rows)).examples
    )
    counts = {c.name: c.count for c in result.checks}
    assert counts == {"bad_role": 1, "empty_field": 1, "bad_role_order": 1, "exact_duplicate": 1}
    assert [ex.line for ex in kept] == [1, 6]
    dup = next(c for c in result.checks if c.name == "exact_duplicate")
    assert dup.examples == ["line 2: same as line 1"]


def test_split_is_seeded_disjoint_and_complete():
    items = list(range(100))
    a, b = seeded_split(items, seed=7), seeded_split(items, seed=7)
    assert a == b
    assert sorted(a["train"] + a["val"] + a["test"]) == items
    assert (len(a["train"]), len(a["val"]), len(a["test"])) == (70, 10, 20)
    assert seeded_split(items, seed=8) != a


def test_prepare_writes_splits_and_reports(tmp_path):
    from conftest import DEMO_DATA

    report = prepare_dataset(DEMO_DATA, tmp_path / "out")
    assert report.task_type == "classification" and len(report.labels) == 10
    assert report.splits == {"train": 175, "val": 25, "test": 50}
    for name in ("train", "val", "test"):
        lines = (tmp_path / "out" / f"{name}.jsonl").read_text().splitlines()
        assert len(lines) == report.splits[name]
    assert json.loads((tmp_path / "out" / "report.json").read_text())["sha256"] == report.sha256
    assert "| exact_duplicate | 0 |" in (tmp_path / "out" / "report.md").read_text()
