"""`ftagent serve --fine-tuning` with the official openai client: real HTTP on loopback, a
real server process (restarted in the middle of a job), real workflow runs on the tiny
model, nothing mocked. The tests share one server and run in file order."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import openai
import pytest
from conftest import DEMO_DATA
from ftagent.tools.serve.app import start_server_process

KEY = "sk-ft-test"
POLICY = "".join(f"{gate}: always\n" for gate in
                 ("strategy", "dataset", "training", "evaluation", "safety", "deployment"))
QUESTION = [{"role": "user", "content": "I lost my card, what now?"}]


class Server:
    """`ftagent serve TINY --fine-tuning` on loopback; `restart()` stops it and starts a
    new process on the same fine-tuning folder."""

    def __init__(self, model: Path, root: Path, policy: Path):
        self.model, self.root, self.policy, self.starts = model, root, policy, 0
        self.handle = None
        self.start()

    def start(self) -> None:
        self.starts += 1
        self.handle = start_server_process(
            self.model, api_key=KEY, model_name="tiny", entry=("-m", "ftagent", "serve"),
            log_path=self.root.parent / f"serve-{self.starts}.log",
            extra_args=["--fine-tuning", "--fine-tuning-dir", str(self.root),
                        "--fine-tuning-policy", str(self.policy), "--max-upload-mb", "1"])
        self.client = openai.OpenAI(base_url=self.handle.base_url, api_key=KEY, max_retries=0,
                                    timeout=60)

    def restart(self) -> None:
        self.handle.stop(timeout=30)
        self.start()

    def wait(self, job_id: str, until, timeout: float = 420):
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            job = self.client.fine_tuning.jobs.retrieve(job_id)
            if until(job):
                return job
            time.sleep(1)
        raise AssertionError(f"job {job_id} is {job.status} after {timeout:.0f} s; server log:\n"
                             f"{self.handle.log_tail()}")


@pytest.fixture(scope="module")
def server(spiky_model, tmp_path_factory):
    folder = tmp_path_factory.mktemp("ft_api")
    (folder / "policy.yaml").write_text(POLICY)
    srv = Server(spiky_model, folder / "fine_tuning", folder / "policy.yaml")
    yield srv
    srv.handle.stop(timeout=30)


@pytest.fixture(scope="module")
def training_file(tmp_path_factory) -> Path:
    """40 demo examples spread over the intents, in OpenAI's chat format (the demo data
    already is), one assistant message marked weight 1 as OpenAI files may be."""
    lines = DEMO_DATA.read_text(encoding="utf-8").splitlines()[::6][:40]
    rows = [json.loads(x) for x in lines]
    rows[0]["messages"][-1]["weight"] = 1
    path = tmp_path_factory.mktemp("ft_data") / "train.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def test_upload_parser_streams_any_chunking_and_stops_at_the_limit(tmp_path):
    from ftagent.tools.serve.uploads import UploadError, receive_upload

    payload = b"".join(b'{"messages": []}\r\n--not-the-boundary\r\n' for _ in range(300))
    req = httpx.Request("POST", "http://x/v1/files", data={"purpose": "fine-tune"},
                        files={"file": ("../../etc/evil name.jsonl", payload)})
    body, ctype = req.read(), req.headers["content-type"]

    async def chunks(size: int):
        for i in range(0, len(body), size):
            yield body[i:i + size]

    for n, size in enumerate((1, 7, 4096, len(body))):
        target = tmp_path / f"f{n}"
        up = asyncio.run(receive_upload(chunks(size), ctype, target, 1 << 20))
        assert target.read_bytes() == payload and up.bytes == len(payload)
        assert up.fields == {"purpose": "fine-tune"}
        assert up.filename == "../../etc/evil name.jsonl"  # metadata only: not a path
    with pytest.raises(UploadError) as err:
        asyncio.run(receive_upload(chunks(1000), ctype, tmp_path / "big", 5000))
    assert err.value.status == 413 and not (tmp_path / "big").exists()


def test_the_fine_tuning_endpoints_need_the_key(server):
    base = server.handle.base_url
    for method, path in [("GET", "/fine_tuning/jobs"), ("POST", "/files"),
                         ("GET", "/files"), ("POST", "/fine_tuning/jobs/ftjob-x/cancel")]:
        for headers in ({}, {"Authorization": "Bearer wrong"}):
            r = httpx.request(method, base + path, headers=headers, timeout=10)
            assert r.status_code == 401, (method, path, r.text)
            assert r.json()["error"]["code"] == "invalid_api_key"
    # and a server that would leave them open does not start, not even on loopback
    import os
    import subprocess
    import sys

    env = {k: v for k, v in os.environ.items() if k != "FTAGENT_SERVE_API_KEY"}
    out = subprocess.run([sys.executable, "-m", "ftagent", "serve", str(server.model),
                          "--fine-tuning", "--port", "1"], capture_output=True, text=True,
                         env=env, timeout=120)
    assert out.returncode != 0 and "--fine-tuning needs an API key" in " ".join(out.stderr.split())


def test_a_malformed_file_fails_in_validating_files_naming_the_line(server, training_file):
    client = server.client
    lines = training_file.read_text().splitlines()[:12]
    bad = json.loads(lines[2])
    bad["messages"][1]["role"] = "robot"
    lines[2] = json.dumps(bad)
    raw = ("\n".join(lines) + "\n").encode()
    uploaded = client.files.create(file=("my data.jsonl", raw), purpose="fine-tune")
    assert uploaded.object == "file" and uploaded.bytes == len(raw)
    assert uploaded.filename == "my data.jsonl" and uploaded.id.startswith("file-")
    assert client.files.content(uploaded.id).content == raw  # stored as uploaded
    assert uploaded.id in [f.id for f in client.files.list()]
    with pytest.raises(openai.BadRequestError) as refused:  # purpose other than fine-tune
        client.files.create(file=("x.jsonl", raw), purpose="batch")
    assert refused.value.body["param"] == "purpose"
    with pytest.raises(openai.APIStatusError) as too_big:  # --max-upload-mb 1
        client.files.create(file=("big.jsonl", b"x" * (2 << 20)), purpose="fine-tune")
    assert too_big.value.status_code == 413

    job = client.fine_tuning.jobs.create(model="tiny", training_file=uploaded.id)
    assert job.status == "validating_files" and job.object == "fine_tuning.job"
    job = server.wait(job.id, lambda j: j.status != "validating_files", 60)
    assert job.status == "failed", job
    assert job.error.code == "invalid_training_file" and job.error.param == "training_file"
    assert "line 3" in job.error.message and "robot" in job.error.message
    assert "messages[1].role" in job.error.message

    with pytest.raises(openai.BadRequestError) as wrong_model:
        client.fine_tuning.jobs.create(model="gpt-4o-mini", training_file=uploaded.id)
    assert wrong_model.value.body["param"] == "model"
    deleted = client.files.delete(uploaded.id)
    assert deleted.deleted and deleted.id == uploaded.id
    with pytest.raises(openai.NotFoundError):
        client.files.retrieve(uploaded.id)


def _answer(client, model: str) -> str:
    out = client.chat.completions.create(model=model, messages=QUESTION, max_tokens=8,
                                         temperature=0)
    return out.choices[0].message.content.strip()


def test_a_job_survives_a_restart_succeeds_and_its_model_is_served(
        server, training_file, spiky_model):
    client = server.client
    base_answer = _answer(client, "tiny")
    uploaded = client.files.create(file=training_file.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(
        model="tiny", training_file=uploaded.id, suffix="demo", seed=7,
        method={"type": "supervised", "supervised": {"hyperparameters": {
            "n_epochs": 1, "batch_size": 4, "learning_rate_multiplier": 50}}})
    assert job.method.type == "supervised" and job.seed == 7
    second = client.fine_tuning.jobs.create(  # the old top-level form; waits its turn
        model="tiny", training_file=uploaded.id, hyperparameters={"n_epochs": 1})
    server.wait(second.id, lambda j: j.status == "queued", 60)
    cancelled = client.fine_tuning.jobs.cancel(second.id)
    assert cancelled.status == "cancelled"
    listed = client.fine_tuning.jobs.list(limit=1)
    assert [j.id for j in listed.data] == [second.id] and listed.has_more  # newest first
    assert [j.id for j in client.fine_tuning.jobs.list(limit=1, after=second.id).data] \
        == [job.id]

    def training(j) -> bool:  # mid-job: the workflow has reached the trainer
        events = client.fine_tuning.jobs.list_events(j.id, limit=100).data
        return any("trainer" in e.message or e.type == "metrics" for e in events)

    server.wait(job.id, lambda j: j.status == "running" and training(j), 300)
    server.restart()
    client = server.client
    assert job.id in [j.id for j in client.fine_tuning.jobs.list().data]
    assert client.fine_tuning.jobs.retrieve(second.id).status == "cancelled"
    done = server.wait(job.id, lambda j: j.status in ("succeeded", "failed", "cancelled"))
    assert done.status == "succeeded", (done.error, server.handle.log_tail())
    assert done.fine_tuned_model == f"ft:tiny:demo:{job.id}"
    assert done.hyperparameters.n_epochs == 1 and done.hyperparameters.batch_size == 4
    assert done.result_files and done.finished_at

    messages = [e.message for e in client.fine_tuning.jobs.list_events(job.id, limit=1000).data]
    assert any("resumed" in m for m in messages) and "Fine-tuning job started" in messages
    assert any(m.startswith("Gate training: approve") for m in messages)
    page = client.fine_tuning.jobs.list_events(job.id, limit=2)
    assert len(page.data) == 2 and page.has_more
    assert page.data[0].message == "The job has successfully completed"
    following = client.fine_tuning.jobs.list_events(job.id, limit=2, after=page.data[1].id)
    assert following.data[0].id not in {e.id for e in page.data}
    metrics = [e.data for e in client.fine_tuning.jobs.list_events(job.id, limit=1000).data
               if e.type == "metrics"]
    assert any("train_loss" in m for m in metrics) and any("valid_loss" in m for m in metrics)
    checkpoints = client.fine_tuning.jobs.checkpoints.list(job.id).data
    assert checkpoints and checkpoints[0].fine_tuning_job_id == job.id
    assert client.files.content(done.result_files[0]).text.startswith("step,train_loss")

    # served at once, next to the base model; answers as the adapter does loaded alone
    assert done.fine_tuned_model in [m.id for m in client.models.list().data]
    tuned_answer = _answer(client, done.fine_tuned_model)
    from ftagent.tools.evaluate.generation import generate_one_by_one
    from ftagent.tools.serve.app import load_for_serving

    adapter = server.root / "jobs" / job.id / "run" / "adapter"
    model, tokenizer = load_for_serving(spiky_model, adapter)
    assert tuned_answer == generate_one_by_one(model, tokenizer, [QUESTION], 8)[0].strip()
    assert tuned_answer and tuned_answer != base_answer
    assert _answer(client, "tiny") == base_answer  # the base is still served as it was


def test_cancel_stops_a_running_job_and_its_trainer(server, training_file):
    import os

    client = server.client
    uploaded = client.files.create(file=training_file.open("rb"), purpose="fine-tune")
    job = client.fine_tuning.jobs.create(model="tiny", training_file=uploaded.id,
                                         hyperparameters={"n_epochs": 30, "batch_size": 1})
    job_file = server.root / "jobs" / job.id / "run" / "train" / "attempt-1" / "job.json"
    server.wait(job.id, lambda j: job_file.is_file(), 180)  # the trainer process runs
    trainer = json.loads(job_file.read_text())["pid"]
    assert client.fine_tuning.jobs.cancel(job.id).status == "cancelled"

    def stopped(j) -> bool:  # the worker was reaped and its run marked
        events = client.fine_tuning.jobs.list_events(j.id, limit=100).data
        return any(e.message.startswith("Workflow stopped") for e in events)

    assert server.wait(job.id, stopped, 60).status == "cancelled"
    with pytest.raises(ProcessLookupError):
        os.kill(trainer, 0)
    with pytest.raises(openai.BadRequestError):
        client.fine_tuning.jobs.cancel(job.id)
    assert not (server.root / "jobs" / job.id / "run" / "train" / "attempt-1" /
                "result.json").exists()


def test_job_requests_take_both_hyperparameter_forms_and_refuse_mixtures():
    from ftagent.agent.service.fine_tuning.shapes import JobRequest
    from pydantic import ValidationError

    old = JobRequest(model="m", training_file="f", hyperparameters={"n_epochs": 3})
    assert old.kind_and_hyperparameters() == ("supervised", {"n_epochs": 3})
    dpo = JobRequest(model="m", training_file="f", method={
        "type": "dpo", "dpo": {"hyperparameters": {"beta": 0.2, "batch_size": "auto"}}})
    assert dpo.kind_and_hyperparameters() == ("dpo", {"beta": 0.2, "batch_size": "auto"})
    for bad in ({"hyperparameters": {"n_epochs": 1}, "method": {"type": "supervised"}},
                {"method": {"type": "reinforcement"}},
                {"method": {"type": "supervised",
                            "supervised": {"hyperparameters": {"beta": 0.1}}}}):
        with pytest.raises(ValueError):
            JobRequest(model="m", training_file="f", **bad).kind_and_hyperparameters()
    for bad in ({"suffix": "../x"}, {"hyperparameters": {"n_epochs": 0}}):
        with pytest.raises(ValidationError):
            JobRequest(model="m", training_file="f", **bad)


def test_a_dpo_job_becomes_a_dpo_run_on_a_checked_copy(tmp_path, tiny_model):
    """OpenAI's preference lines become ftagent's {prompt, chosen, rejected} rows in the
    job's folder (the upload is left as it is) and the run is made with method dpo."""
    from ftagent.agent.service.fine_tuning.store import Store
    from ftagent.agent.service.fine_tuning.validate import JobError, prepare_run
    from ftagent.agent.service.runs import read_manifest

    store = Store(tmp_path / "ft")
    rows = [{"input": {"messages": [{"role": "user", "content": f"Question {i}?"}]},
             "preferred_output": [{"role": "assistant", "content": f"A good answer {i}."}],
             "non_preferred_output": [{"role": "assistant", "content": "No."}]}
            for i in range(24)]
    raw = "".join(json.dumps(r) + "\n" for r in rows).encode()
    file_id = store.new_file_id()
    store.file_path(file_id).write_bytes(raw)
    store.add_file({"id": file_id, "created_at": 0, "bytes": len(raw), "filename": "p.jsonl",
                    "purpose": "fine-tune"})
    job = {"id": store.new_job_id(), "training_file": file_id, "method_type": "dpo",
           "hyperparameters": {"beta": 0.2}, "seed": 3}
    run_dir = prepare_run(store, job, str(tiny_model))
    inputs = read_manifest(run_dir)["inputs"]
    assert inputs["constraints"] == {"method": "dpo"}
    assert inputs["overrides"] == {"dpo_beta": 0.2, "seed": 3}
    first = json.loads(Path(inputs["data_path"]).read_text().splitlines()[0])
    assert set(first) == {"prompt", "chosen", "rejected"}
    assert store.file_path(file_id).read_bytes() == raw

    bad = dict(job, id=store.new_job_id(), method_type="supervised")
    with pytest.raises(JobError) as err:  # a preference file is no chat file
        prepare_run(store, bad, str(tiny_model))
    assert err.value.code == "invalid_training_file" and "line 1" in err.value.message


def test_engine_serves_several_adapters_each_as_it_answers_alone(spiky_model, tmp_path):
    """Base and two adapters, requests interleaved: each batch holds one adapter, and
    every greedy answer equals that model's answer loaded alone, one by one."""
    import threading

    import torch
    from ftagent.tools.evaluate.compare import load_plain
    from ftagent.tools.evaluate.generation import generate_one_by_one, prompt_ids
    from ftagent.tools.serve.app import load_for_serving
    from ftagent.tools.serve.engine import BatchingEngine, SamplingParams
    from peft import LoraConfig, get_peft_model

    chats = [[{"role": "user", "content": q}] for q in ("Hi", "Refund", "PIN blocked?")]
    for i in (1, 2):
        torch.manual_seed(i)
        cfg = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
        get_peft_model(load_plain(spiky_model)[0], cfg).save_pretrained(tmp_path / f"a{i}")
    ref = {None: generate_one_by_one(*load_plain(spiky_model), chats, 8)}
    for i in (1, 2):
        ref[f"a{i}"] = generate_one_by_one(*load_for_serving(spiky_model, tmp_path / f"a{i}"),
                                           chats, 8)
    assert ref["a1"] != ref[None] and ref["a2"] != ref["a1"]
    model, tokenizer = load_plain(spiky_model)
    engine = BatchingEngine(model, tokenizer, max_batch_size=4, batch_wait_s=0.2).start()
    engine.add_adapter("a1", tmp_path / "a1")
    engine.add_adapter("a2", tmp_path / "a2")
    texts, done = {}, threading.Semaphore(0)

    def listener(key):
        texts[key] = ""

        def on_event(ev):
            texts[key] += ev.text
            if ev.finish_reason or ev.error:
                done.release()
        return on_event

    try:
        for rep in range(2):
            for adapter in (None, "a1", "a2"):
                for j, ids in enumerate(prompt_ids(tokenizer, chats)):
                    engine.submit(ids, SamplingParams(max_tokens=8), listener((rep, adapter, j)),
                                  adapter)
        for _ in texts:
            assert done.acquire(timeout=60)
    finally:
        engine.stop()
    for (_, adapter, j), text in texts.items():
        assert text.strip() == ref[adapter][j], (adapter, j)
    assert engine.stats()["adapter_switches"] >= 3
