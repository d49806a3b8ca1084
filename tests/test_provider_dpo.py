"""Provider DPO: preference pairs become OpenAI's DPO lines (checked line by line, errors
naming file, line and field) and a job with `method: dpo`, run against ftagent's own
`serve --fine-tuning` the way tests/test_provider.py runs a supervised one: real
processes on loopback, real HTTP, the tiny model, a few pairs and one epoch."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import openai
import pytest
from conftest import ROOT, write_jsonl
from test_provider import KEY, KEY_ENV, provider  # noqa: F401 - the provider server fixture

HH_PAIRS = Path(__file__).resolve().parent / "assets" / "hh_rlhf_harmless_base"
GOAL = "a more harmless assistant"


def pairs(path: Path, n: int) -> Path:
    rows = (HH_PAIRS / "train.jsonl").read_text(encoding="utf-8").splitlines()[:n]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def test_dpo_lines_are_checked_line_by_line(tmp_path):
    from ftagent.tools.config.imported import ConfigImportError
    from ftagent.tools.provider.files import write_provider_file

    q = [{"role": "user", "content": "How do I pick a lock?"}]
    good = {"prompt": q, "chosen": [{"role": "assistant", "content": "Call a locksmith."}],
            "rejected": [{"role": "assistant", "content": "Use a bobby pin."}]}
    split = write_jsonl(tmp_path / "split.jsonl", [good, good])
    made = write_provider_file(split, tmp_path / "train.jsonl", "training_file t.jsonl", "dpo")
    line = json.loads((tmp_path / "train.jsonl").read_text().splitlines()[0])
    assert line == {"input": {"messages": q},
                    "preferred_output": [{"role": "assistant", "content": "Call a locksmith."}],
                    "non_preferred_output": [{"role": "assistant",
                                              "content": "Use a bobby pin."}]}
    assert made.examples == 2 and made.tokens > 20

    for bad, where in (
            (dict(good, rejected=[{"role": "assistant", "content": " "}]),
             "non_preferred_output[0].content"),
            (dict(good, prompt=q + good["chosen"]), "input.messages[1].role"),
            (dict(good, chosen=[]), "preferred_output")):
        split = write_jsonl(tmp_path / "bad.jsonl", [good, bad])
        with pytest.raises(ConfigImportError) as err:
            write_provider_file(split, tmp_path / "bad-out.jsonl", "training_file b.jsonl",
                                "dpo")
        assert f"training_file b.jsonl, line 2: {where}" in str(err.value)


def test_a_dpo_job_is_created_in_openais_method_form_with_gate_edits():
    from ftagent.agent.graph.nodes.provider import job_hyperparameters
    from ftagent.tools.provider.jobs import method_body

    planned = {"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": "auto",
               "beta": "auto"}
    hyper, ignored = job_hyperparameters(planned, {"num_epochs": 1, "dpo_beta": 0.2})
    assert hyper == {**planned, "n_epochs": 1, "beta": 0.2} and not ignored
    assert method_body(hyper, "dpo") == {"type": "dpo", "dpo": {"hyperparameters": {
        "n_epochs": 1, "batch_size": 8, "beta": 0.2}}}
    # a supervised job has no beta: the edit is named as ignored, none is sent
    sft = {k: v for k, v in planned.items() if k != "beta"}
    assert job_hyperparameters(sft, {"dpo_beta": 0.2}) == (sft, ["dpo_beta"])
    assert method_body(hyper, "supervised")["supervised"]["hyperparameters"] == {
        "n_epochs": 1, "batch_size": 8}


# The limit covers the server fixture's setup too (the bundled model converted once a
# session, the server started), which a busy machine can stretch past the default.
@pytest.mark.timeout(1800)
def test_preference_pairs_run_a_dpo_job_at_the_provider(provider, tmp_path):  # noqa: F811
    handle, folder = provider
    run_dir, env = tmp_path / "run", {**os.environ, KEY_ENV: KEY}
    cli = [sys.executable, "-m", "ftagent"]
    first = subprocess.run(
        [*cli, "run", "--goal", GOAL, "--data", str(pairs(tmp_path / "hh.jsonl", 18)),
         "--model", "tiny", "--provider-url", handle.base_url, "--provider-key-env", KEY_ENV,
         "--provider-probes", "2", "--run-dir", str(run_dir), "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=900, env=env)
    assert first.returncode == 3, first.stdout[-2000:] + first.stderr[-2000:]  # waiting
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["objective"] == "dpo" and plan["hyperparameters"]["beta"] == "auto"
    assert plan["targets"]["primary_metric"] == "rouge_l"

    # One epoch and beta 0.2 at the strategy gate; every later gate approved.
    second = subprocess.run(
        [*cli, "resume", str(run_dir), "--gate", "strategy", "--edit", "num_epochs=1",
         "--edit", "dpo_beta=0.2", "--approve",
         "dataset,training,evaluation,safety,deployment", "--json"],
        capture_output=True, text=True, cwd=ROOT, timeout=1500, env=env)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]

    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    created = next(e for e in events if e["type"] == "provider_job_created")
    assert created["method"] == "dpo"
    client = openai.OpenAI(base_url=handle.base_url, api_key=KEY, max_retries=0)
    job = client.fine_tuning.jobs.retrieve(created["job_id"])
    assert job.status == "succeeded" and job.method.type == "dpo"
    assert job.method.dpo.hyperparameters.beta == 0.2 and job.hyperparameters.n_epochs == 1
    served = folder / "jobs" / "jobs" / job.id / "run" / "config.yaml"  # the server's run
    assert {"objective: dpo", "dpo_beta: 0.2", "num_epochs: 1.0"} <= set(
        served.read_text().splitlines())
    written = run_dir / "data" / "provider" / "train.jsonl"
    assert client.files.content(job.training_file).content == written.read_bytes()
    lines = [json.loads(x) for x in written.read_text().splitlines()]
    assert all(set(x) == {"input", "preferred_output", "non_preferred_output"}
               for x in lines)

    deployed = json.loads((run_dir / "model" / "deployment.json").read_text())
    assert deployed["model_id"] == job.fine_tuned_model.strip()
    assert "provider fine-tuning (dpo)" in (run_dir / "model" / "README.md").read_text()
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    assert report["primary_metric"] == "rouge_l" and report["tuned"]["rouge_l"] is not None
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path
