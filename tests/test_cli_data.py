"""`ftagent data ...` in fresh processes: exit codes, outputs, and never overwriting."""

import json

from conftest import DEMO_DATA, ftagent, write_jsonl


def test_validate_exit_codes_and_formats(tmp_path, bundled_model):
    clean = ftagent("data", "validate", str(DEMO_DATA), "--format", "json")
    assert clean.returncode == 0, clean.stderr
    report = json.loads(clean.stdout)
    assert report["kept"] == 250 and report["token_lengths"]["p50"] > 50

    rows = [
        {
            "messages": [
                {"role": "user", "content": f"question {i}"},
                {"role": "assistant", "content": f"answer {i}"},
            ]
        }
        for i in range(5)
    ]
    warn = write_jsonl(tmp_path / "warn.jsonl", rows)  # too little data: a warning only
    assert ftagent("data", "validate", str(warn)).returncode == 0
    strict = ftagent("data", "validate", str(warn), "--strict", "--format", "md")
    assert strict.returncode == 1 and "too_little_data" in strict.stdout

    broken = tmp_path / "broken.jsonl"
    broken.write_text(warn.read_text() + "{oops\n")
    r = ftagent("data", "validate", str(broken))
    assert r.returncode == 2 and "unparsable" in r.stdout

    missing = ftagent("data", "validate", str(tmp_path / "nope.jsonl"))
    assert missing.returncode == 2 and "file not found" in missing.stderr


def test_prepare_writes_outputs_and_refuses_to_overwrite(tmp_path, bundled_model):
    out = tmp_path / "prepared"
    r = ftagent("data", "prepare", str(DEMO_DATA), "--out", str(out), "--test-fraction", "0.2")
    assert r.returncode == 0, r.stderr
    assert "train 175, val 25, test 50" in r.stdout
    assert json.loads((out / "report.json").read_text())["split_sha256"]["test"]
    again = ftagent("data", "prepare", str(DEMO_DATA), "--out", str(out))
    assert again.returncode == 2 and "already holds a prepared dataset" in again.stderr


def test_inspect_shows_schema_rows_and_histogram(tmp_path, bundled_model):
    rows = [{"question": f"what is {i}+{i}?", "answer": str(2 * i)} for i in range(30)]
    path = write_jsonl(tmp_path / "qa.jsonl", rows)
    r = ftagent("data", "inspect", str(path), "--rows", "2")
    assert r.returncode == 0, r.stderr
    assert "prompt_completion" in r.stdout and "prompt <- question" in r.stdout
    assert "what is 0+0?" in r.stdout and "█" in r.stdout
    bad = ftagent("data", "inspect", str(path), "--column", "nonsense")
    assert bad.returncode == 2 and "ROLE=FIELD" in bad.stderr
