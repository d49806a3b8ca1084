"""Data tool: readers, schemas, checks, fixes, splits and outputs, on real and broken files."""

import json

import pytest
from conftest import DEMO_DATA, write_jsonl
from ftagent.tools.data import DataError, PrepareOptions, prepare_dataset, validate_dataset
from ftagent.tools.data.checks import pii_kinds
from ftagent.tools.data.rows import Item
from ftagent.tools.data.splits import stratified_group_split

NO_NEARDUP = PrepareOptions(near_dup_threshold=None)


def chat(user: str, answer: str) -> dict:
    return {
        "messages": [{"role": "user", "content": user}, {"role": "assistant", "content": answer}]
    }


def counts(report) -> dict:
    return {c.name: c.count for c in report.checks if c.count}


@pytest.mark.parametrize(
    "rows, schema, first",
    [
        ([chat("hi", "hello")], "messages", "hello"),
        (
            [{"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "yo"}]}],
            "sharegpt",
            "yo",
        ),
        ([{"instruction": "Translate", "input": "bonjour", "output": "hello"}], "alpaca", "hello"),
        ([{"question": "2+2?", "answer": "4"}], "prompt_completion", "4"),
        ([{"text": "my card is lost", "category": "lost_card"}], "classification", "lost_card"),
        (
            [
                {
                    "turns": [
                        {"speaker": "USER", "utterance": "hi"},
                        {"speaker": "SYSTEM", "utterance": "hello"},
                    ]
                }
            ],
            "dialogue_turns",
            "hello",
        ),
    ],
)
def test_schemas_are_detected_and_normalised(tmp_path, rows, schema, first):
    from ftagent.tools.data.prepare import read_and_convert

    a = read_and_convert(write_jsonl(tmp_path / "d.jsonl", rows), NO_NEARDUP)
    assert a.info["schema"].name == schema
    assert a.kept[0].example["messages"][-1] == {"role": "assistant", "content": first}


def test_column_mapping_is_reported(tmp_path):
    path = write_jsonl(
        tmp_path / "qa.jsonl", [{"question": f"q{i}", "answer": f"a{i}"} for i in range(5)]
    )
    r = validate_dataset(path, NO_NEARDUP)
    assert r.column_mapping == {"prompt": "question", "completion": "answer"}
    assert "prompt <- question" in r.schema_detail


def test_preference_hh_transcripts_become_prompt_chosen_rejected(tmp_path):
    row = {
        "chosen": "\n\nHuman: hi\n\nAssistant: hello!\n\nHuman: joke?\n\nAssistant: no.",
        "rejected": "\n\nHuman: hi\n\nAssistant: hello!\n\nHuman: joke?\n\nAssistant: ok",
    }
    path = write_jsonl(
        tmp_path / "p.jsonl", [{**row, "rejected": row["rejected"] + "!" * i} for i in range(4)]
    )
    r = prepare_dataset(path, tmp_path / "out", NO_NEARDUP)
    assert r.kind == "preference" and r.task_type == "preference"
    ex = json.loads((tmp_path / "out" / "train.jsonl").read_text().splitlines()[0])
    assert [m["role"] for m in ex["prompt"]] == ["user", "assistant", "user"]
    assert ex["chosen"] == [{"role": "assistant", "content": "no."}]


def test_bad_lines_are_reported_with_line_numbers_and_the_rest_is_read(tmp_path):
    path = tmp_path / "mixed.jsonl"
    good = [json.dumps(chat(f"question {i}", f"answer {i}")) for i in range(6)]
    path.write_bytes(
        ("\n".join(good[:2] + ['{"messages": [', "[1, 2]"] + good[2:]) + "\n").encode()
        + b'{"messages": "\xff\xfe"}\n'
    )
    r = validate_dataset(path, NO_NEARDUP)
    found = {c.name: c for c in r.checks if c.count}
    assert found["unparsable"].count == 2
    assert found["unparsable"].examples[0].startswith("line 3: malformed JSON")
    assert found["invalid_utf8"].examples == ["line 9: invalid UTF-8 at byte 14"]
    assert r.kept == 6 and not r.passed  # errors block the gate until a person decides


def test_row_checks(tmp_path):
    rows = [
        chat("q1", "a1"),
        chat("q1", "a1"),  # exact duplicate
        chat("q2", "  "),  # empty answer
        {"messages": [{"role": "user", "content": "q3"}, {"role": "bot", "content": "x"}]},
        {"messages": [{"role": "user", "content": "q4"}]},  # no answer
        {"messages": [{"role": "user"}]},  # missing content -> empty
        chat("mail bob@example.com", "ok\x07 sure"),
        chat("cafÃ© opening hours?", "9 to 5"),
        chat("q9", "a"),
    ]
    r = validate_dataset(write_jsonl(tmp_path / "v.jsonl", rows), NO_NEARDUP)
    c = counts(r)
    assert c["exact_duplicate"] == 1 and c["empty_field"] == 2 and c["bad_role"] == 1
    assert c["role_order"] == 1 and c["pii"] == 1 and c["control_chars"] == 1
    assert c["mojibake"] == 1 and c["short_output"] == 1 and c["too_little_data"] == 1
    dup = next(x for x in r.checks if x.name == "exact_duplicate")
    assert dup.examples == ["line 2: same as line 1"] and dup.severity == "warning"


def test_pii_detection():
    assert pii_kinds("card 4111 1111 1111 1111") == ["card number"]
    assert pii_kinds("card 4111 1111 1111 1112") == []  # fails the Luhn check
    assert "secret key" in pii_kinds("key AKIAABCDEFGHIJKLMNOP")
    assert pii_kinds("I paid 1000 on 12.03.2021") == []


def test_near_duplicates_are_dropped_and_written_to_rejected(tmp_path):
    words = (
        "please tell me how I can change the pin of my debit card at an atm near me today "
        "because I forgot the old one and the branch is closed until monday so I need to "
        "do it myself with the app or the machine and I do not know which menu to use "
        "for that or whether there is a fee"
    ).split()
    edited = words[:30] + ["kindly"] + words[31:]  # one word of ~60 changed
    rows = [
        chat(" ".join(words), "change_pin"),
        chat(" ".join(edited), "change_pin"),
        chat("what is the exchange rate for dollars to euros right now", "exchange_rate"),
    ]
    rows += [chat(f"unrelated question number {i} about something else", f"x{i}") for i in range(5)]
    out = tmp_path / "out"
    r = prepare_dataset(write_jsonl(tmp_path / "n.jsonl", rows), out)
    assert counts(r)["near_duplicate"] == 1
    rejected = [json.loads(x) for x in (out / "rejected.jsonl").read_text().splitlines()]
    assert rejected == [
        {
            "ref": "line 2",
            "check": "near_duplicate",
            "detail": "near-same as line 1",
            "record": rows[1],
        }
    ]


def test_classification_split_is_stratified_and_seeded(tmp_path):
    report = prepare_dataset(DEMO_DATA, tmp_path / "a", NO_NEARDUP)
    again = prepare_dataset(DEMO_DATA, tmp_path / "b", NO_NEARDUP)
    assert report.splits == {"train": 200, "val": 25, "test": 25}
    assert report.split_sha256 == again.split_sha256
    test = [
        json.loads(x)["messages"][-1]["content"]
        for x in (tmp_path / "a" / "test.jsonl").read_text().splitlines()
    ]
    assert set(test) == set(report.labels)  # every label in the test split...
    assert {test.count(t) for t in set(test)} <= {2, 3}  # ...in the same proportion


def test_group_aware_split_keeps_groups_together():
    items = [Item(f"r{i}", {}, None, label="x") for i in range(40)]
    groups = [i // 4 for i in range(40)]  # ten groups of four
    splits = stratified_group_split(items, groups, {"val": 0.1, "test": 0.2}, seed=3)
    where = {i.ref: name for name, part in splits.items() for i in part}
    for g in range(10):
        assert len({where[f"r{i}"] for i in range(40) if groups[i] == g}) == 1
    assert sum(len(p) for p in splits.values()) == 40 and len(splits["test"]) == 8


def test_user_test_file_is_respected_and_leakage_dropped(tmp_path):
    train = [chat(f"how do I do task number {i} in the app", f"answer {i}") for i in range(30)]
    test = [
        chat("how do I do task number 3 in the app", "answer 3"),
        chat("a question only in the test set", "x"),
    ]
    out = tmp_path / "out"
    opts = PrepareOptions(
        near_dup_threshold=None, test_file=str(write_jsonl(tmp_path / "t.jsonl", test))
    )
    r = prepare_dataset(write_jsonl(tmp_path / "train.jsonl", train), out, opts)
    assert r.splits["test"] == 2 and counts(r)["leakage"] == 1
    assert "task number 3 " not in (out / "train.jsonl").read_text()


def test_outputs_and_input_untouched(tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_text(DEMO_DATA.read_text())
    before = src.read_bytes()
    out = tmp_path / "out"
    r = prepare_dataset(src, out, NO_NEARDUP)
    assert src.read_bytes() == before
    for name in (
        "train.jsonl",
        "val.jsonl",
        "test.jsonl",
        "report.json",
        "report.md",
        "rejected.jsonl",
        "dataset/dataset_dict.json",
    ):
        assert (out / name).exists(), name
    from datasets import load_from_disk

    assert load_from_disk(str(out / "dataset"))["train"].num_rows == r.splits["train"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "out"]


@pytest.mark.parametrize("kind", ["csv", "tsv", "json", "parquet", "datasets", "glob"])
def test_file_formats(tmp_path, kind):
    rows = [{"text": f"message number {i}", "label": "a" if i % 2 else "b"} for i in range(12)]
    if kind in ("csv", "tsv"):
        sep = "," if kind == "csv" else "\t"
        path = tmp_path / f"d.{kind}"
        path.write_text(
            f"text{sep}label\n" + "".join(f"{r['text']}{sep}{r['label']}\n" for r in rows)
        )
    elif kind == "json":
        path = tmp_path / "d.json"
        path.write_text(json.dumps(rows))
    elif kind == "parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = tmp_path / "d.parquet"
        pq.write_table(pa.Table.from_pylist(rows), path)
    elif kind == "datasets":
        from datasets import Dataset

        path = tmp_path / "saved"
        Dataset.from_list(rows).save_to_disk(str(path))
    else:
        write_jsonl(tmp_path / "a.jsonl", rows[:6])
        write_jsonl(tmp_path / "b.jsonl", rows[6:])
        path = str(tmp_path / "*.jsonl")
    r = validate_dataset(path, NO_NEARDUP)
    assert r.schema_name == "classification" and r.kept == 12 and r.labels == ["a", "b"]


def test_ragged_csv_rows_are_reported(tmp_path):
    path = tmp_path / "r.csv"
    path.write_text("text,label\nhello,a\nbroken,row,extra\nbye,b\n")
    found = {c.name: c for c in validate_dataset(path, NO_NEARDUP).checks}
    assert found["unparsable"].examples == ["line 3: ragged row: 3 fields, the header has 2"]


@pytest.mark.parametrize(
    "content, message",
    [
        (b"", "empty"),
        (b"\x00\x01\x02binary", "binary"),
        (b"{", "malformed"),
    ],
)
def test_unusable_files_raise_clear_errors(tmp_path, content, message):
    path = tmp_path / "x.json"
    path.write_bytes(content)
    with pytest.raises(DataError, match=message):
        validate_dataset(
            path.with_suffix(".json") if message != "binary" else path.rename(tmp_path / "x.bin"),
            NO_NEARDUP,
        )


def test_missing_paths_and_empty_folders(tmp_path):
    with pytest.raises(DataError, match="file not found"):
        validate_dataset(tmp_path / "nope.jsonl", NO_NEARDUP)
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match="no data files"):
        validate_dataset(tmp_path / "empty", NO_NEARDUP)
    with pytest.raises(DataError, match="matches no file"):
        validate_dataset(str(tmp_path / "*.parquet"), NO_NEARDUP)


def test_token_lengths_and_loss_preview(tmp_path, bundled_model):
    rows = [chat(f"what is {i} plus {i}?", f"It is {2 * i}.") for i in range(10)]
    rows.append(chat("word " * 300, "too long"))
    opts = PrepareOptions(model=str(bundled_model.path), max_length=64, near_dup_threshold=None)
    r = prepare_dataset(write_jsonl(tmp_path / "t.jsonl", rows), tmp_path / "out", opts)
    assert counts(r)["answer_truncated"] == 1
    assert r.token_lengths["p100"] > 300 and r.token_lengths["p50"] < 64
    p = r.preview[0]
    assert p["template_prefix_ok"] and p["loss"].startswith("It is 0.")
    assert "what is 0 plus 0?" in p["prompt"] and "It is" not in p["prompt"]
    assert "▶It is 0." in (tmp_path / "out" / "report.md").read_text()


def test_parallel_first_pass_gives_the_same_report(tmp_path, monkeypatch):
    from ftagent.tools.data import validate

    lines = DEMO_DATA.read_text().splitlines()
    text = "\n".join(lines + lines[:40] + ['{"messages": ['] + lines[::7]) + "\n"
    path = tmp_path / "big.jsonl"
    path.write_text(text)
    opts = PrepareOptions(near_dup_threshold=0.85)
    one = validate.validate_stream(path, opts, workers=1)
    monkeypatch.setattr(validate, "PARALLEL_MIN_BYTES", 4096)  # cut this small file in pieces
    two = validate.validate_stream(path, opts, workers=2)
    assert one.model_dump() == two.model_dump()
    found = counts(two)
    assert found["exact_duplicate"] == 40 + len(lines[::7]) and found["unparsable"] == 1
    bad = next(c for c in two.checks if c.name == "unparsable")
    assert bad.examples[0].startswith(f"line {len(lines) + 41}: malformed JSON")


def test_loss_masking_mistakes_are_caught(tmp_path, bundled_model):
    from ftagent.tools.data.validate import validate_stream
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bundled_model.path)
    # A template whose generation prompt is not how it renders assistant turns: the
    # answer's tokens cannot be found after the prompt, so loss would land elsewhere.
    tok.chat_template = (
        "{% for m in messages %}{{ '<|im_start|>' + (m['role'] if m['role'] != 'assistant' "
        "else 'bot') + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}"
        "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
    )
    rows = [chat(f"question {i}", f"answer {i}") for i in range(5)]
    path = write_jsonl(tmp_path / "m.jsonl", rows)
    report = validate_stream(path, PrepareOptions(near_dup_threshold=None), tokenizer=tok)
    found = next(c for c in report.checks if c.name == "loss_mask")
    assert found.count == 3 and found.severity == "error" and "prefix" in found.examples[0]
    good = validate_stream(
        path,
        PrepareOptions(near_dup_threshold=None),
        tokenizer=AutoTokenizer.from_pretrained(bundled_model.path),
    )
    assert "loss_mask" not in counts(good)


def test_datasets_folder_written_by_workers(tmp_path, monkeypatch):
    from datasets import load_from_disk
    from ftagent.tools.data import prepare

    monkeypatch.setattr(prepare, "PARALLEL_SAVE_ROWS", 1)  # num_proc even for a small set
    splits = {"train": [chat(f"q {i}", f"a {i}") for i in range(50)], "val": [chat("q", "a")]}
    prepare.save_datasets_folder(tmp_path, splits)
    saved = load_from_disk(str(tmp_path / "dataset"))
    assert saved["train"].to_list() == splits["train"] and saved["val"].to_list() == splits["val"]
