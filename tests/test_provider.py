"""Provider fine-tuning from the workflow: the plan's cost, the provider's file checks, and
ftagent's provider path driving ftagent's own `serve --fine-tuning` — two real processes
on loopback, real HTTP, the tiny model, nothing mocked."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import pytest
from conftest import DEMO_DATA, ROOT, ftagent, write_jsonl

KEY = "sk-provider-e2e-7f3a"  # the server's key, given to the run in KEY_ENV only
KEY_ENV = "FTAGENT_TEST_PROVIDER_KEY"
POLICY = "".join(f"{gate}: always\n" for gate in
                 ("strategy", "dataset", "training", "evaluation", "safety", "deployment"))
GOAL = "route banking questions to the right intent"


def test_the_plan_estimates_cost_from_tokens_epochs_and_the_price_table():
    from ftagent.tools.provider.plan import provider_plan
    from ftagent.tools.provider.settings import TRAINING_USD_PER_MTOK, ProviderSettings

    openai_model = ProviderSettings(model="gpt-4o-mini-2024-07-18")
    p = provider_plan(GOAL, DEMO_DATA, openai_model)
    assert p.task_type == "classification" and p.n_examples == 250
    assert p.hyperparameters == {"n_epochs": 3, "batch_size": 8,
                                 "learning_rate_multiplier": "auto"}
    train_tokens = round(p.tokens_per_epoch * 0.8)
    assert p.cost_usd == pytest.approx(train_tokens * 3 * TRAINING_USD_PER_MTOK[p.model] / 1e6,
                                       abs=1e-4)
    assert 0.05 < p.cost_usd < 1.0 and p.fits and not p.targets.loss_must_drop
    # another endpoint: its price is not known, and the plan says so
    other = provider_plan(GOAL, DEMO_DATA, ProviderSettings(model="tiny",
                                                            base_url="http://127.0.0.1:9/v1"))
    assert other.cost_usd is None and any("Cost: unknown" in r for r in other.reasons)
    # over budget: the strategy gate's check fails, with the reason
    from ftagent.tools.plan.types import Constraints

    tight = provider_plan(GOAL, DEMO_DATA, openai_model, Constraints(budget_usd=0.01))
    assert not tight.fits and "over the budget" in tight.warnings[0]


def test_the_provider_file_is_checked_line_by_line(tmp_path):
    from ftagent.tools.config.imported import ConfigImportError
    from ftagent.tools.provider.files import write_provider_file

    rows = [json.loads(x) for x in DEMO_DATA.read_text().splitlines()[:3]]
    good = write_provider_file(write_jsonl(tmp_path / "split.jsonl", rows),
                               tmp_path / "train.jsonl", "training_file train.jsonl")
    assert good.examples == 3 and good.tokens > 30
    written = [json.loads(x) for x in (tmp_path / "train.jsonl").read_text().splitlines()]
    assert written == [{"messages": r["messages"]} for r in rows]
    rows[1]["messages"][-1]["content"] = "   "  # no answer to learn
    with pytest.raises(ConfigImportError) as err:
        write_provider_file(write_jsonl(tmp_path / "bad.jsonl", rows),
                            tmp_path / "train2.jsonl", "training_file train2.jsonl")
    assert "training_file train2.jsonl, line 2" in str(err.value)
    assert "messages[2].content" in str(err.value)


def test_gate_edits_become_the_jobs_hyperparameters():
    from ftagent.agent.graph.nodes.provider import job_hyperparameters

    planned = {"n_epochs": 3, "batch_size": 8, "learning_rate_multiplier": "auto"}
    hyper, ignored = job_hyperparameters(planned, {"num_epochs": 1, "batch_size": 2,
                                                   "grad_accum": 4, "learning_rate": 4e-4,
                                                   "lora.r": 32, "seed": 3})
    assert hyper == {"n_epochs": 1, "batch_size": 8, "learning_rate_multiplier": 2.0}
    assert ignored == ["lora.r"]


def test_a_provider_run_needs_its_key_before_anything_is_made(tmp_path):
    env_key = os.environ.pop("OPENAI_API_KEY", None)
    try:
        out = ftagent("run", "--goal", GOAL, "--data", str(DEMO_DATA), "--model",
                      "gpt-4o-mini-2024-07-18", "--run-dir", str(tmp_path / "run"))
    finally:
        if env_key is not None:
            os.environ["OPENAI_API_KEY"] = env_key
    assert out.returncode == 2, out.stderr
    assert "set OPENAI_API_KEY to the API key of https://api.openai.com/v1" in out.stderr
    assert not (tmp_path / "run").exists()


@pytest.fixture(scope="module")
def provider(spiky_model, tmp_path_factory):
    """`ftagent serve TINY --fine-tuning` on loopback: the provider."""
    from ftagent.tools.serve.app import start_server_process

    folder = tmp_path_factory.mktemp("provider")
    (folder / "policy.yaml").write_text(POLICY)
    handle = start_server_process(
        spiky_model, api_key=KEY, model_name="tiny", entry=("-m", "ftagent", "serve"),
        log_path=folder / "serve.log",
        extra_args=["--fine-tuning", "--fine-tuning-dir", str(folder / "jobs"),
                    "--fine-tuning-policy", str(folder / "policy.yaml")])
    yield handle, folder
    handle.stop(timeout=30)


def _run_args(handle, data: Path, run_dir: Path, policy: Path) -> list[str]:
    return [sys.executable, "-m", "ftagent", "run", "--goal", GOAL, "--data", str(data),
            "--model", "tiny", "--provider-url", handle.base_url, "--provider-key-env",
            KEY_ENV, "--provider-probes", "5", "--policy", str(policy), "--run-dir",
            str(run_dir), "--json"]


def test_stopping_the_run_cancels_the_provider_job(provider, small_data, tmp_path):
    """Ctrl-C while the job runs at the provider cancels it there (first in this file, so
    the server is not busy with the other test's job)."""
    handle, folder = provider
    run_dir = tmp_path / "run"
    proc = subprocess.Popen(_run_args(handle, small_data, run_dir, folder / "policy.yaml"),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=ROOT,
                            env={**os.environ, KEY_ENV: KEY},
                            # a test started in the background inherits SIGINT ignored
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    events_file = run_dir / "events.jsonl"
    deadline = time.monotonic() + 300
    created = None
    while created is None and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.5)
        if events_file.is_file():
            created = next((json.loads(x) for x in events_file.read_text().splitlines()
                            if '"provider_job_created"' in x), None)
    assert created, proc.stderr.read() if proc.poll() is not None else "no job in 300 s"
    proc.send_signal(signal.SIGINT)  # Ctrl-C at the terminal
    proc.wait(60)
    client = openai.OpenAI(base_url=handle.base_url, api_key=KEY, max_retries=0)
    assert client.fine_tuning.jobs.retrieve(created["job_id"]).status == "cancelled"
    assert proc.returncode != 0
    record = json.loads((run_dir / "train" / "attempt-1" / "provider_job.json").read_text())
    assert record["job_id"] == created["job_id"] and record["status"] == "cancelled"
    assert "the run was stopped" in record["stopped_by"]


def test_the_provider_path_drives_ftagents_own_fine_tuning_server(provider, small_data,
                                                                   tmp_path):
    handle, folder = provider
    run_dir = tmp_path / "run"
    out = subprocess.run(_run_args(handle, small_data, run_dir, folder / "policy.yaml"),
                         capture_output=True, text=True, cwd=ROOT, timeout=1500,
                         env={**os.environ, KEY_ENV: KEY})
    assert out.returncode == 0, out.stdout[-3000:] + out.stderr[-3000:]
    events = [json.loads(x) for x in (run_dir / "events.jsonl").read_text().splitlines()]
    kinds = [e["type"] for e in events]
    assert kinds[-1] == "run_finished" and events[-1]["status"] == "done"

    # the plan says where, and that the cost is unknown at this endpoint
    plan = (run_dir / "plan.md").read_text()
    assert f"tiny at {handle.base_url}" in plan and "Cost: unknown" in plan
    # the files the server got are the provider files data_prep wrote and checked
    client = openai.OpenAI(base_url=handle.base_url, api_key=KEY, max_retries=0)
    created = next(e for e in events if e["type"] == "provider_job_created")
    job = client.fine_tuning.jobs.retrieve(created["job_id"])
    assert job.status == "succeeded" and job.hyperparameters.n_epochs == 3
    assert job.hyperparameters.batch_size == 8  # the plan's, as sent
    uploaded = client.files.content(job.training_file).content
    assert uploaded == (run_dir / "data" / "provider" / "train.jsonl").read_bytes()

    # the job's statuses, events and training progress streamed into the run's events
    statuses = [e["status"] for e in events if e["type"] == "provider_status"]
    assert statuses[0] == "validating_files" and statuses[-1] == "succeeded"
    assert "running" in statuses
    said = [e["message"] for e in events if e["type"] == "provider_event"]
    assert "Fine-tuning job started" in said and "Step trainer started" in said
    progress = [e for e in events if e["type"] == "train_progress"]
    assert progress and progress[-1]["step"] == progress[-1]["max_steps"] > 0
    losses = [e["loss"] for e in progress if "loss" in e]
    assert losses and all(isinstance(x, float) for x in losses)
    assert any("eval_loss" in e for e in progress)  # the job's validation file was used

    # the tester asked base and tuned through the chat endpoint; the deployer recorded it
    state = json.loads((run_dir / "model" / "deployment.json").read_text())
    assert state["model_id"] == job.fine_tuned_model.strip()
    assert state["model_id"].startswith("ft:tiny:ftagent-1:")
    report = json.loads((run_dir / "eval" / "report.json").read_text())
    tuned_answers = [s["tuned"] for s in report["samples"]]
    assert report["n_test"] == len(report["samples"]) and report["n_probe"] == 5
    assert report["base"]["accuracy"] is not None and report["base"]["loss"] is None
    first = json.loads((run_dir / "data" / "test.jsonl").read_text().splitlines()[0])
    again = client.chat.completions.create(model=state["model_id"], max_tokens=16,
                                           temperature=0, messages=first["messages"][:-1])
    assert again.choices[0].message.content == tuned_answers[0]
    assert [s["tuned"] for s in report["samples"]] != [s["base"] for s in report["samples"]]
    card = (run_dir / "model" / "README.md").read_text()
    assert state["model_id"] in card and job.id in card and "## Evaluation" in card

    # the key was read from the environment only: in no file of the run
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_ctrl_c_reaches_a_node_in_langgraphs_worker_thread():
    """LangGraph runs a node in a worker thread when custom events stream and waits for it
    before a Ctrl-C leaves `graph.stream`: the driver's handler must tell the node at once
    (the provider's follower then cancels its job). Real LangGraph, a real SIGINT."""
    import threading
    from typing import TypedDict

    from ftagent.agent.graph.stop import STOP_REQUESTED
    from ftagent.agent.service.session import _stop_on_signals
    from langgraph.config import get_stream_writer
    from langgraph.graph import END, START, StateGraph

    class S(TypedDict, total=False):
        x: int

    heard = {}

    def waits_outside(state: dict) -> dict:
        get_stream_writer()({"waiting": True})
        heard["node_thread"] = threading.current_thread() is not threading.main_thread()
        heard["stop"] = STOP_REQUESTED.wait(60)
        raise KeyboardInterrupt("stopped")  # as the follower does, after cancelling

    g = StateGraph(S)
    g.add_node("n", waits_outside)
    g.add_edge(START, "n")
    g.add_edge("n", END)
    graph = g.compile()
    STOP_REQUESTED.clear()
    # Python's own Ctrl-C handler, as at a terminal (a run started in the background
    # inherits SIGINT ignored)
    outer = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        started = time.monotonic()
        with _stop_on_signals():
            threading.Timer(1.0, os.kill, (os.getpid(), signal.SIGINT)).start()
            with pytest.raises(KeyboardInterrupt):
                for _ in graph.stream({"x": 1}, stream_mode=["updates", "custom"]):
                    pass
        assert heard == {"node_thread": True, "stop": True}
        assert time.monotonic() - started < 30
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # put back
    finally:
        signal.signal(signal.SIGINT, outer)
        STOP_REQUESTED.clear()
