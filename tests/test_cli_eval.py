"""`ftagent eval` on any two models: a model against itself scores the same on every
metric and probe; bad input exits 2 with the reason; a report is never overwritten."""

import json

from conftest import ftagent


def test_a_model_against_itself_scores_the_same(tmp_path, tiny_model, small_data):
    out = tmp_path / "e"
    r = ftagent("eval", "--base", str(tiny_model), "--tuned", str(tiny_model), "--test",
                str(small_data), "--out", str(out), "--json")
    assert r.returncode == 0, r.stderr[-3000:]
    report = json.loads(r.stdout)["report"]
    assert report["n_test"] == 32 and report["n_arc"] == 50 and report["n_safe"] == 40
    assert report["n_probe"] == 50
    base, tuned = report["base"], report["tuned"]
    assert base == tuned  # same weights, deterministic greedy decoding
    assert base["rouge_l"] is not None and base["arc_accuracy"] is not None
    assert {s["model"] for s in report["probe_samples"]} == {"base", "tuned"}
    for name in ("report.json", "report.md", "metrics.png"):
        assert (out / name).exists(), name
    again = ftagent("eval", "--base", str(tiny_model), "--tuned", str(tiny_model), "--test",
                    str(small_data), "--out", str(out))
    assert again.returncode == 2 and "already holds a report" in again.stderr


def test_bad_input_says_what_is_missing(tmp_path, tiny_model):
    r = ftagent("eval")
    assert r.returncode == 2 and "--run RUN, or --base, --tuned and --test" in r.stderr
    r = ftagent("eval", "--base", str(tiny_model), "--tuned", str(tmp_path / "nope"),
                "--test", str(tmp_path / "t.jsonl"))
    assert r.returncode == 2 and "--tuned" in r.stderr and "not found" in r.stderr
    r = ftagent("eval", "--run", str(tmp_path))
    assert r.returncode == 2 and "no finished training" in r.stderr
