"""`ftagent serve`: real servers in real subprocesses, driven by the real openai client.

Most tests share one server (module scope) on the 2-layer random Llama, its weights redrawn
with a larger std as in test_generation (at the default init every prompt gets the same
empty answer, which could catch neither a padding leak nor a mix-up between requests).
One end-to-end test runs the bundled SmolLM2 through `ftagent serve`.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import httpx
import openai
import pytest
from ftagent.tools.serve.app import free_port, start_server_process

KEY = "sk-test-key"
QUESTIONS = ["Hi", "How do I reset my PIN?", "Exchange rate for euros today, please?", "Refund"]


def chat(q: str) -> list[dict]:
    return [{"role": "user", "content": q}]


@pytest.fixture(scope="module")
def smollm_cli(bundled_model, tmp_path_factory):
    """`ftagent serve smollm2-135m-instruct` through the real CLI, launched before the tiny
    server so that its start-up (imports, model load) overlaps the fast tests."""
    port, log = free_port(), tmp_path_factory.mktemp("smollm_cli") / "serve.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "ftagent", "serve", "smollm2-135m-instruct",
             "--port", str(port), "--log-level", "warning"],
            stdout=out, stderr=subprocess.STDOUT, env={**os.environ})
    yield proc, port, log
    proc.terminate()
    proc.wait(20)


@pytest.fixture(scope="module")
def server(spiky_model, smollm_cli):
    # a wide wait window: requests sent together must start together even on a busy CPU
    handle = start_server_process(spiky_model, api_key=KEY, model_name="tiny",
                                  extra_args=["--batch-wait-ms", "100", "--max-batch-size", "4"])
    yield handle
    handle.stop()


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server.base_url, api_key=KEY, max_retries=0, timeout=60)


@pytest.fixture(scope="module")
def tok(spiky_model):
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(spiky_model)


def one_by_one(model_dir, questions, max_new_tokens):
    from ftagent.tools.evaluate.compare import load_plain
    from ftagent.tools.evaluate.generation import generate_one_by_one

    model, tokenizer = load_plain(model_dir)
    return generate_one_by_one(model, tokenizer, [chat(q) for q in questions], max_new_tokens)


def concurrently(fn, items):
    """Call fn on every item at the same moment, from one thread each; results in order."""
    barrier, out = threading.Barrier(len(items)), [None] * len(items)

    def run(i):
        barrier.wait()
        out[i] = fn(items[i])

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return out


def test_lists_the_model(client):
    assert [m.id for m in client.models.list()] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"


def test_chat_usage_and_stream_match(client, tok):
    from ftagent.tools.evaluate.generation import prompt_ids

    r = client.chat.completions.create(model="tiny", messages=chat("Hello there"), max_tokens=12)
    n_prompt = len(prompt_ids(tok, [chat("Hello there")])[0])
    assert r.usage.prompt_tokens == n_prompt
    assert r.usage.total_tokens == n_prompt + r.usage.completion_tokens
    assert 1 <= r.usage.completion_tokens <= 12 and r.choices[0].finish_reason in {"stop", "length"}
    text = r.choices[0].message.content
    assert text

    stream = client.chat.completions.create(model="tiny", messages=chat("Hello there"),
                                            max_tokens=12, stream=True,
                                            stream_options={"include_usage": True})
    chunks = list(stream)
    assert chunks[0].choices[0].delta.role == "assistant"
    pieces = [c.choices[0].delta.content or "" for c in chunks if c.choices]
    assert len([p for p in pieces if p]) > 1  # tokens arrive one by one, not all at the end
    assert "".join(pieces) == text
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == \
        r.choices[0].finish_reason
    assert chunks[-1].usage.model_dump() == r.usage.model_dump()


def test_max_tokens_ends_with_length(client):
    r = client.chat.completions.create(model="tiny", messages=chat("Tell me a story"),
                                       max_tokens=5)
    assert r.choices[0].finish_reason == "length" and r.usage.completion_tokens == 5


def test_stop_sequence_cuts_the_answer(client):
    full = client.chat.completions.create(model="tiny", messages=chat("Count"), max_tokens=16)
    text = full.choices[0].message.content
    stop = text[len(text) // 2 : len(text) // 2 + 2]
    assert stop.strip()
    cut = client.chat.completions.create(model="tiny", messages=chat("Count"), max_tokens=16,
                                         stop=[stop, "never-appears"])
    assert cut.choices[0].message.content == text[: text.index(stop)]
    assert cut.choices[0].finish_reason == "stop"
    streamed = client.chat.completions.create(model="tiny", messages=chat("Count"),
                                              max_tokens=16, stop=stop, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in streamed) == text[: text.index(stop)]


def test_completions_endpoint(client, tok):
    r = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=6)
    assert r.object == "text_completion" and r.choices[0].finish_reason in {"stop", "length"}
    assert r.usage.prompt_tokens == len(tok("Once upon a time")["input_ids"])
    assert r.usage.completion_tokens <= 6
    many = client.completions.create(model="tiny", prompt=["a b", "c d e"], max_tokens=3)
    assert [c.index for c in many.choices] == [0, 1]
    streamed = client.completions.create(model="tiny", prompt="Once upon a time", max_tokens=6,
                                         stream=True)
    assert "".join(c.choices[0].text for c in streamed) == r.choices[0].text


def test_sampling_with_seed_is_reproducible(client):
    def ask(seed):
        return client.chat.completions.create(
            model="tiny", messages=chat("Hi"), max_tokens=10, temperature=1.0, top_p=0.9,
            seed=seed).choices[0].message.content

    assert ask(7) == ask(7)
    assert len({ask(s) for s in range(4)}) > 1


def test_api_key_is_required(server):
    wrong = openai.OpenAI(base_url=server.base_url, api_key="nope", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        wrong.models.list()
    r = httpx.post(f"{server.base_url}/chat/completions", json={"model": "tiny"})
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server.base_url.removesuffix("/v1") + "/health").status_code == 200


def test_bad_requests_get_openai_errors(client, server):
    with pytest.raises(openai.NotFoundError) as e:
        client.chat.completions.create(model="gpt-4o", messages=chat("Hi"), max_tokens=3)
    assert e.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as e:  # the tiny model's context is 1024
        client.chat.completions.create(model="tiny", messages=chat("Hi"), max_tokens=5000)
    assert e.value.code == "context_length_exceeded" and "1024" in e.value.message
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny", prompt="word " * 1100, max_tokens=1)

    auth = {"Authorization": f"Bearer {KEY}", "Content-Type": "application/json"}
    url = f"{server.base_url}/chat/completions"
    r = httpx.post(url, content=b'{"model": "tiny", "messages": [', headers=auth)
    assert r.status_code == 400
    assert set(r.json()["error"]) == {"message", "type", "param", "code"}
    r = httpx.post(url, json={"model": "tiny"}, headers=auth)
    assert r.status_code == 400 and r.json()["error"]["param"] == "messages"
    r = httpx.post(url, json={"model": "tiny", "messages": chat("Hi"), "logprobs": True},
                   headers=auth)
    assert r.status_code == 400 and r.json()["error"]["code"] == "unsupported_parameter"


def test_concurrent_requests_are_batched_and_match_one_by_one(client, server, spiky_model):
    def ask(q):
        r = client.chat.completions.create(model="tiny", messages=chat(q), max_tokens=16)
        return r.choices[0].message.content

    answers = concurrently(ask, QUESTIONS)
    assert [a.strip() for a in answers] == one_by_one(spiky_model, QUESTIONS, 16)
    assert len(set(answers)) > 1
    stats = httpx.get(server.base_url.removesuffix("/v1") + "/stats",
                      headers={"Authorization": f"Bearer {KEY}"}).json()
    assert stats["max_batch_seen"] > 1 and stats["errors"] == 0


def test_engine_serves_a_lora_adapter_like_one_by_one(spiky_model, tmp_path):
    """In-process engine (no HTTP) on base + LoRA: batched greedy equals one-by-one."""
    import torch
    from ftagent.tools.evaluate.compare import load_plain
    from ftagent.tools.evaluate.generation import generate_one_by_one, prompt_ids
    from ftagent.tools.serve.app import load_for_serving
    from ftagent.tools.serve.engine import BatchingEngine, SamplingParams
    from peft import LoraConfig, get_peft_model

    base, _ = load_plain(spiky_model)
    torch.manual_seed(1)
    cfg = LoraConfig(r=4, target_modules=["q_proj", "v_proj"], init_lora_weights=False)
    get_peft_model(base, cfg).save_pretrained(tmp_path / "adapter")
    model, tokenizer = load_for_serving(spiky_model, tmp_path / "adapter")
    assert type(model).__name__.startswith("Peft")
    ref = generate_one_by_one(model, tokenizer, [chat(q) for q in QUESTIONS], 12)

    engine = BatchingEngine(model, tokenizer, max_batch_size=4, batch_wait_s=0.2).start()
    texts, done = [""] * len(QUESTIONS), threading.Semaphore(0)

    def listener(i):
        def on_event(ev):
            texts[i] += ev.text
            if ev.finish_reason or ev.error:
                done.release()
        return on_event

    try:
        for i, ids in enumerate(prompt_ids(tokenizer, [chat(q) for q in QUESTIONS])):
            engine.submit(ids, SamplingParams(max_tokens=12), listener(i))
        for _ in QUESTIONS:
            assert done.acquire(timeout=60)
    finally:
        engine.stop()
    assert [t.strip() for t in texts] == ref
    assert engine.stats()["max_batch_seen"] == len(QUESTIONS)


def test_text_stream_multibyte_and_stop(bundled_model):
    from ftagent.tools.serve.engine import TextStream
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bundled_model.path)
    text = "Grüße 🤗 aus 世界 — naïve café, ok?"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    stream = TextStream(tok)
    pieces = [stream.push(t)[0] for t in ids] + [stream.flush()]
    assert "".join(pieces) == tok.decode(ids) == text
    assert not any("\ufffd" in p for p in pieces)  # half a character is never sent

    stream, sent, hit = TextStream(tok, stop=("世界",)), "", False
    for t in ids:
        piece, hit = stream.push(t)
        sent += piece
        if hit:
            break
    assert hit and sent == "Grüße 🤗 aus "


def test_cli_serves_the_bundled_model_end_to_end(smollm_cli, bundled_model):
    """`ftagent serve smollm2-135m-instruct`: batched greedy answers equal one-by-one."""
    proc, port, log = smollm_cli
    base = f"http://127.0.0.1:{port}/v1"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if httpx.get(f"{base}/models", timeout=2).status_code == 200:
                break
        except httpx.TransportError:
            time.sleep(0.3)
    assert proc.poll() is None, log.read_text()
    client = openai.OpenAI(base_url=base, api_key="unused", max_retries=0, timeout=120)
    questions = QUESTIONS[:3]

    def ask(q):
        r = client.chat.completions.create(model="smollm2-135m-instruct", messages=chat(q),
                                           max_tokens=12, temperature=0)
        return r.choices[0].message.content

    answers = concurrently(ask, questions)
    assert [a.strip() for a in answers] == one_by_one(bundled_model.path, questions, 12)
    stream = client.chat.completions.create(model="smollm2-135m-instruct",
                                            messages=chat(questions[1]), max_tokens=12,
                                            stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in stream) == answers[1]
    assert httpx.get(f"http://127.0.0.1:{port}/stats").json()["max_batch_seen"] > 1


def test_both_entry_points_take_the_options_table():
    """`python -m ftagent.tools.serve` (argparse) and `ftagent serve` (typer) are built
    from one table: the same options, defaults and settings, and a mismatch is refused."""
    import inspect

    from ftagent.agent.cli.serve import FINE_TUNING_OPTIONS, serve_command
    from ftagent.tools.serve.options import DEFAULTS, HELP, build_parser, settings_from

    params = {k: v for k, v in inspect.signature(serve_command).parameters.items()
              if k not in FINE_TUNING_OPTIONS}  # `ftagent serve`'s own, not the tool's
    assert set(params) == set(HELP)
    ap = build_parser("serve", "")
    parsed = vars(ap.parse_args(["m", "--no-batching", "--port", "9", "--api-key", "k"]))
    assert set(parsed) == set(HELP)
    settings = settings_from(parsed)
    assert (settings.max_batch_size, settings.port, settings.api_key) == (1, 9, "k")
    for name, param in params.items():
        if name not in ("model_dir", "no_batching", "api_key"):
            assert param.default == getattr(DEFAULTS, name) == ap.get_default(name), name
    with pytest.raises(ValueError, match="unknown \\['extra'\\]"):
        settings_from(parsed | {"extra": 1})
