"""The teacher: a real `ftagent serve` endpoint driven by the real openai client, and the
bundled SmolLM2 as a local teacher; answers cached in SQLite, checked like user data, and
the whole workflow distilling prompt-only data."""

from __future__ import annotations

import json

import pytest
from conftest import DEMO_DATA, ftagent, write_jsonl
from ftagent.tools.serve.app import free_port, start_server_process
from ftagent.tools.teacher.cache import Answer, AnswerCache
from ftagent.tools.teacher.checks import answer_problem, clean_answer, labels_in_prompt
from ftagent.tools.teacher.distill import distill, estimate, read_prompts
from ftagent.tools.teacher.generate import TeacherError, generate_answers
from ftagent.tools.teacher.settings import TeacherSettings
from ftagent.tools.teacher.synthetic import novel, parse_example, shortfalls

KEY, KEY_ENV = "sk-teacher-test", "FTAGENT_TEST_TEACHER_KEY"
DEMO_SYSTEM = json.loads(DEMO_DATA.read_text().splitlines()[0])["messages"][0]["content"]


@pytest.fixture(scope="module")
def server(spiky_model):
    handle = start_server_process(spiky_model, api_key=KEY, model_name="tiny-teacher")
    yield handle
    handle.stop()


@pytest.fixture
def endpoint(server, monkeypatch):
    monkeypatch.setenv(KEY_ENV, KEY)
    return TeacherSettings(model="tiny-teacher", base_url=server.base_url, api_key_env=KEY_ENV,
                           max_tokens=6, concurrency=3, max_retries=0, timeout_s=60)


def prompts_file(path, n: int):
    rows = [{"prompt": f"Question {i}: how do I change my PIN number {i} times?"}
            for i in range(n)]
    rows.append(dict(rows[0]))  # the same prompt twice is asked once
    rows.append({"messages": [{"role": "system", "content": "Be brief."},
                              {"role": "user", "content": "Where is my card?"},
                              {"role": "assistant", "content": "OLD ANSWER"}]})
    return write_jsonl(path, rows)


def test_endpoint_answers_are_cached_and_a_killed_run_resumes(endpoint, tmp_path):
    full = prompts_file(tmp_path / "prompts.jsonl", 6)
    before = full.read_bytes()
    half = write_jsonl(tmp_path / "half.jsonl",
                       [json.loads(x) for x in full.read_text().splitlines()[:3]])
    cache = tmp_path / "cache.sqlite"

    # "Killed half-way": only the first half was answered (and cached) before.
    first = distill(half, tmp_path / "a", endpoint, cache)
    assert first["requests"] == 3 and first["cache_hits"] == 0
    resumed = distill(full, tmp_path / "b", endpoint, cache)
    assert resumed["cache_hits"] == 3 + 1  # the half, and the duplicate of row 0
    assert resumed["requests"] == 6 - 3 + 1  # the rest, each unique prompt once
    again = distill(full, tmp_path / "c", endpoint, cache)
    assert again["requests"] == 0 and again["cache_hits"] == again["rows"] == 8
    assert full.read_bytes() == before  # the user's file is never modified

    kept = [json.loads(x) for x in (tmp_path / "c" / "generated.jsonl").read_text().splitlines()]
    rejected = [json.loads(x) for x in (tmp_path / "c" / "rejected.jsonl").read_text().splitlines()]
    assert len(kept) + len(rejected) == 8 and again["kept"] == len(kept)
    for r in rejected:  # random weights rarely stop within 6 tokens
        assert r["reason"].startswith(("truncated", "empty answer")) and r["meta"]["teacher"]
    for r in kept:
        assert r["messages"][-1]["role"] == "assistant" and r["meta"]["settings"]["max_tokens"] == 6
    # The chat row's old answer is what the teacher replaces; its system prompt stays.
    chat = next(r for r in kept + rejected if r["messages"][0]["content"] == "Be brief.")
    assert "OLD ANSWER" not in json.dumps(chat["messages"])
    # The answer of a repeated row is identical: it is one request.
    same = [r for r in rejected + kept if r["meta"]["source"].endswith((":1", ":7"))]
    assert len(same) == 2 and len({json.dumps(r.get("answer") or r["messages"]) for r in same}) == 1


def test_estimate_counts_cached_prompts_and_cost(endpoint, tmp_path):
    priced = endpoint.model_copy(update={"price_in_per_mtok": 1.0, "price_out_per_mtok": 2.0})
    prompts = [p for _, p in read_prompts(prompts_file(tmp_path / "p.jsonl", 4))]
    cache = AnswerCache(tmp_path / "cache.sqlite")
    est = estimate(priced, prompts, cache)
    assert est["requests"] == 5 and est["cached"] == 0  # 6 rows, one duplicate
    assert est["answer_tokens_at_most"] == 5 * 6
    assert est["cost_usd_at_most"] == pytest.approx(
        (est["prompt_tokens"] * 1.0 + 30 * 2.0) / 1e6, abs=1e-4)
    answers, stats = generate_answers(priced, prompts[:2], cache)
    assert stats.cost_usd > 0 and stats.prompt_tokens > 0
    after = estimate(priced, prompts, cache)
    assert after["cached"] == 3 and after["requests"] == 3  # rows 0, 1 and row 0's repeat


def test_rate_limit_spaces_the_requests(endpoint, tmp_path):
    slow = endpoint.model_copy(update={"requests_per_minute": 300, "max_tokens": 1})
    prompts = [[{"role": "user", "content": f"r{i}"}] for i in range(5)]
    _, stats = generate_answers(slow, prompts, AnswerCache(tmp_path / "c.sqlite"))
    assert stats.requests == 5 and stats.wall_s >= 4 * 60 / 300  # 0.2 s apart at least


def test_an_unusable_teacher_is_a_clear_error(endpoint, tmp_path, monkeypatch):
    cache = AnswerCache(tmp_path / "c.sqlite")
    prompts = [[{"role": "user", "content": "hi"}]]
    monkeypatch.setenv(KEY_ENV, "sk-wrong")
    with pytest.raises(TeacherError, match="answered none of 1 requests.*AuthenticationError"):
        generate_answers(endpoint, prompts, cache)
    gone = endpoint.model_copy(update={"base_url": f"http://127.0.0.1:{free_port()}/v1"})
    with pytest.raises(TeacherError, match="Check the URL"):
        generate_answers(gone, prompts, cache)
    assert len(cache) == 0  # failures are never cached: the next run asks again


def test_local_teacher_labels_are_checked(bundled_model, tmp_path):
    """SmolLM2 (not tuned) as a local teacher on the demo's prompts: an answer that names
    no intent is set aside with the reason, one that does is trained as the bare label."""
    rows = [json.loads(x) for x in DEMO_DATA.read_text().splitlines()[:4]]
    prompts = write_jsonl(tmp_path / "p.jsonl", [{"messages": r["messages"][:2]} for r in rows])
    teacher = TeacherSettings(model=str(bundled_model.path), max_tokens=24, batch_size=4)
    report = distill(prompts, tmp_path / "out", teacher, tmp_path / "cache.sqlite")
    assert report["labels"] == labels_in_prompt(rows[0]["messages"]) and len(report["labels"]) == 10
    assert report["requests"] == 4 and report["kept"] + report["rejected"] == 4
    kept = [json.loads(x) for x in (tmp_path / "out" / "generated.jsonl").read_text().splitlines()]
    assert all(r["messages"][-1]["content"] in report["labels"] for r in kept)
    bad = [json.loads(x) for x in (tmp_path / "out" / "rejected.jsonl").read_text().splitlines()]
    assert all(r["reason"].startswith(("names none of the 10 labels", "truncated")) for r in bad)
    again = distill(prompts, tmp_path / "out2", teacher, tmp_path / "cache.sqlite")
    assert again["requests"] == 0 and again["cache_hits"] == 4


def test_answer_checks():
    ok = Answer("card_arrival", "stop", 5, 2, "t")
    labels = labels_in_prompt([{"role": "system", "content": DEMO_SYSTEM}])
    assert labels[0] == "card_arrival" and labels[-1] == "request_refund"
    assert answer_problem(ok, 8, labels) is None
    assert clean_answer("The intent is: pin blocked.", labels) == "pin_blocked"
    assert answer_problem(Answer("  ", "stop", 1, 0, "t"), 8) == "empty answer"
    assert answer_problem(Answer("abc", "length", 1, 8, "t"), 8).startswith("truncated")
    assert answer_problem(Answer("no idea", "stop", 1, 2, "t"), 8, labels).startswith(
        "names none of the 10 labels")
    assert "email" in answer_problem(Answer("write to a.b@example.com", "stop", 1, 5, "t"), 8)
    assert answer_problem(Answer("", "error: RateLimitError: slow down", 0, 0, "t"), 8) == (
        "teacher error (RateLimitError: slow down)")
    assert labels_in_prompt([{"role": "system", "content": "Be kind."}]) == []


def test_synthetic_parsing_dedupe_and_shortfalls():
    assert parse_example('Sure! {"input": "Where is my card?", "output": "card_arrival"} ok') == {
        "input": "Where is my card?", "output": "card_arrival"}
    assert parse_example("no json") == "no JSON object in the answer"
    assert parse_example('{"input": "x"}') == "field output missing or empty"
    seen = ["How do I change the PIN on my new debit card today"]
    new = ["how do I change the PIN on my new debit card today?",  # the seed, reworded case
           "Why was I charged a fee for withdrawing cash abroad",
           "Why was I charged a fee for withdrawing cash abroad",  # repeats the one above
           "Can I use Apple Pay with this card"]
    assert novel(new, seen) == [False, True, False, True]
    rows = [{"messages": [{"role": "user", "content": str(i)},
                          {"role": "assistant", "content": lab}]}
            for i, lab in enumerate(["a"] * 5 + ["b"] * 2 + ["c"] * 4)]
    assert shortfalls(rows) == {"b": 3, "c": 1}
    assert shortfalls(rows, target=3) == {"b": 1}


def test_workflow_distils_prompt_only_data_with_a_local_teacher(bundled_model, tiny_model,
                                                               tmp_path):
    """`ftagent run` with a teacher and prompt-only data: the plan shows what generation
    costs, data_prep has the teacher answer, the student trains and the run finishes; a
    second run's plan finds every answer in the cache."""
    questions = ["What is two plus two?", "Name a primary colour.", "Say hello in French.",
                 "What is the capital of Italy?", "How many days are in a week?",
                 "What colour is the sky?", "Name a fruit.", "What is the opposite of hot?",
                 "Spell the word cat.", "What animal barks?", "What is ice made of?",
                 "How many legs does a spider have?", "Name a planet.", "What do bees make?",
                 "What is the first month of the year?", "Name a musical instrument."]
    data = write_jsonl(tmp_path / "prompts.jsonl",
                       [{"prompt": q + " Answer in a few words."} for q in questions])
    config = tmp_path / "teacher.yaml"
    config.write_text("max_tokens: 40\nbatch_size: 8\n")
    common = ["--goal", "answer short general knowledge questions, distilled from a teacher",
              "--data", str(data), "--model", str(tiny_model),
              "--teacher", str(bundled_model.path), "--teacher-config", str(config)]
    # A random 2-layer student cannot meet the targets: every gate is approved by name.
    gates = "strategy,dataset,training,evaluation,safety,deployment"
    done = ftagent("run", *common, "--approve", gates, "--run-dir", str(tmp_path / "r1"),
                   "--max-attempts", "1", "--json")
    assert done.returncode == 0, done.stdout[-3000:]
    state = json.loads((tmp_path / "r1" / "plan.json").read_text())
    assert state["method"] == "distillation"
    gen = json.loads((tmp_path / "r1" / "data" / "teacher" / "generation.json").read_text())
    assert gen["requests"] == len(questions) and gen["kept"] >= 10
    assert (tmp_path / "r1" / "train" / "attempt-1" / "adapter").exists()
    manifest = json.loads((tmp_path / "r1" / "manifest.json").read_text())
    assert manifest["status"] == "done" and (tmp_path / "r1" / "merged").exists()
    assert manifest["inputs"]["teacher"]["max_tokens"] == 40
    strategy = [e for e in map(json.loads, (tmp_path / "r1" / "events.jsonl").read_text()
                               .splitlines()) if e.get("gate") == "strategy"]
    assert any("Teacher" in json.dumps(e) for e in strategy)

    second = ftagent("run", *common, "--run-dir", str(tmp_path / "r2"), "--json")
    assert second.returncode != 0  # waits at the strategy gate
    est = json.loads((tmp_path / "r2" / "plan.json").read_text())
    assert est["method"] == "distillation"
    events = (tmp_path / "r2" / "events.jsonl").read_text()
    assert f"{len(questions)} already cached" in events


def test_evaluation_gate_takes_augment_and_sends_it_to_data_prep():
    from ftagent.agent.graph.gates import DecisionError, check_changes
    from ftagent.agent.graph.routing import after_evaluation

    assert check_changes("evaluation", {"augment": True}) == {"augment": True}
    assert check_changes("evaluation", {"augment": 40}) == {"augment": 40}
    for bad in (0, "yes", False):
        with pytest.raises(DecisionError, match="augment is true or a number"):
            check_changes("evaluation", {"augment": bad})
    with pytest.raises(DecisionError, match="cannot change 'augment'"):
        check_changes("dataset", {"augment": True})
    state = {"decisions": {"evaluation": {"action": "edit", "changes": {"augment": True}}}}
    assert after_evaluation(state) == "data_prep"


def test_unanswered_chat_rows_are_prompts_and_keep_their_system_prompt(tmp_path):
    from ftagent.tools.data import PrepareOptions, validate_dataset
    from ftagent.tools.data.schema import guess_schema

    rows = [{"messages": [{"role": "system", "content": DEMO_SYSTEM},
                          {"role": "user", "content": f"Where is my card number {i}?"}]}
            for i in range(12)]
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    assert guess_schema(rows[0]).kind == "prompts"
    assert guess_schema({"messages": [*rows[0]["messages"],
                                      {"role": "assistant", "content": "x"}]}).kind == "chat"
    report = validate_dataset(path, PrepareOptions(near_dup_threshold=None))
    assert report.kind == "prompts" and report.kept == 12
    assert read_prompts(path)[0][1][0] == {"role": "system", "content": DEMO_SYSTEM}
