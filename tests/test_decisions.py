"""Decisions only people make: one validation for every way of deciding a gate, every
decision recorded with where it came from, and policy files that approve and refuse as
written (the real CLI, graph, SQLite and tiny-model training)."""

from __future__ import annotations

import json

import pytest
from conftest import ftagent
from ftagent.agent.chat.tools import ChatContext, decide_gate, set_config
from ftagent.agent.graph.gates import DecisionError, GateDecision, GateRequest, check_changes
from ftagent.agent.service.policy import PolicyError, gate_numbers, load_policy
from ftagent.agent.service.session import ApprovalPolicy


@pytest.mark.parametrize("gate,changes,said", [
    ("dataset", {"bogus": 1}, "cannot change 'bogus'; it accepts: "),
    ("dataset", {"method": "qlora"}, None),  # config field: fine
    ("dataset", {"licence": "permissive"}, "cannot change 'licence'"),  # plan choice: strategy
    ("strategy", {"licence": "permissive", "lora.r": 8}, None),
    ("strategy", {"lora.r": 0}, "lora.r"),  # a value outside its range
    ("evaluation", {"data_path": "more.jsonl", "num_epochs": 2}, None),
    ("training", {"data_path": "more.jsonl"}, "cannot change 'data_path'"),
    ("safety", {"num_epochs": 2}, "takes approve or reject only"),
    ("nowhere", {"num_epochs": 2}, "unknown gate 'nowhere'"),
])
def test_one_check_for_every_edit(gate, changes, said):
    if said is None:
        assert check_changes(gate, changes) == changes
        return
    with pytest.raises(DecisionError) as err:
        check_changes(gate, changes)
    assert said in str(err.value)
    if "it accepts" in said:
        assert "learning_rate" in str(err.value) and "lora.r" in str(err.value)


def test_every_path_refuses_an_unknown_key(tmp_path):
    with pytest.raises(DecisionError, match="cannot change 'bogus'"):  # TUI and chat build it
        GateDecision(action="edit", changes={"bogus": 1}, gate="dataset")
    with pytest.raises(DecisionError, match="cannot change 'bogus'"):  # the CLI's flags
        ApprovalPolicy.from_flags(edits={"training": {"bogus": 1}})
    with pytest.raises(DecisionError, match="needs at least one change"):
        GateDecision(action="edit", gate="dataset")
    ctx = ChatContext(runs_root=tmp_path)
    assert "cannot change 'bogus'" in set_config(ctx, {"bogus": 1})  # the chat
    assert ctx.pending_config == {}


def test_cli_resume_edit_is_checked_before_anything_runs(tmp_path, tiny_model, small_data):
    run_dir = tmp_path / "run"
    r = ftagent("run", "--goal", "route intents", "--data", str(small_data), "--model",
                str(tiny_model), "--run-dir", str(run_dir))
    assert r.returncode == 3 and "Waiting at gate 'strategy'" in r.stdout, r.stdout + r.stderr
    before = (run_dir / "events.jsonl").read_text()

    bad = ftagent("resume", str(run_dir), "--edit", "bogus=1", "--gate", "strategy")
    assert bad.returncode == 2 and "cannot change 'bogus'; it accepts:" in bad.stderr
    wrong = ftagent("resume", str(run_dir), "--edit", "num_epochs=1", "--gate", "training")
    assert wrong.returncode == 2 and "waits at the strategy gate, not training" in wrong.stderr
    assert (run_dir / "events.jsonl").read_text() == before  # nothing ran, nothing recorded

    ok = ftagent("resume", str(run_dir), "--edit", "num_epochs=1", "--gate", "strategy")
    assert ok.returncode == 3, ok.stdout + ok.stderr
    made = json.loads((run_dir / "manifest.json").read_text())["decisions_made"]
    assert made[0]["gate"] == "strategy" and made[0]["source"] == "cli"
    assert made[0]["detail"] == "--edit num_epochs=1" and made[0]["changes"] == {"num_epochs": 1}


# ---- policy files ----------------------------------------------------------------------


def _request(gate: str, passed: bool = True, **evidence) -> GateRequest:
    return GateRequest(gate=gate, title=gate, question="?", passed=passed, summary="",
                       evidence=evidence)


def _rows(**metrics) -> list[dict]:
    return [{"metric": m, "base": b, "tuned": t} for m, (b, t) in metrics.items()]


def test_policy_decides_as_written(tmp_path):
    path = tmp_path / "policy.yaml"
    path.write_text("strategy: passed\n"
                    "evaluation:\n"
                    "  when:\n"
                    "    - accuracy >= 0.85\n"
                    "    - arc_easy_drop <= 2\n"
                    "safety: {when: [harmful_refusal >= 0.5]}\n"
                    "deployment: wait\n")
    policy = load_policy(path)
    good = _request("evaluation", targets=_rows(accuracy=(0.1, 0.9), arc_accuracy=(0.6, 0.59)))
    decision = policy.decide(good)
    assert decision.action == "approve" and decision.source == "policy"
    assert f"{path}, line 2: evaluation: accuracy >= 0.85 (accuracy is 0.9)" in decision.detail

    low = _request("evaluation", targets=_rows(accuracy=(0.03, 0.35), arc_accuracy=(0.6, 0.6)))
    assert policy.decide(low) is None
    assert "'accuracy >= 0.85' not met (accuracy is 0.35)" in policy.unmet
    forgot = _request("evaluation", targets=_rows(accuracy=(0.1, 0.9), arc_accuracy=(0.6, 0.5)))
    assert policy.decide(forgot) is None and "arc_easy_drop is 10" in policy.unmet

    assert policy.decide(_request("strategy")).action == "approve"
    assert policy.decide(_request("strategy", passed=False)) is None
    assert policy.decide(_request("deployment")) is None and "wait" in policy.unmet
    assert policy.decide(_request("dataset")) is None
    assert "leaves the dataset gate to a person" in policy.unmet
    unsafe = _request("safety", scores={"base": {"refusal_rate": 0.8},
                                        "tuned": {"refusal_rate": 0.3}})
    assert policy.decide(unsafe) is None and "harmful_refusal is 0.3" in policy.unmet
    missing = _request("safety")
    assert policy.decide(missing) is None and "has no number 'harmful_refusal'" in policy.unmet


def test_gate_numbers_name_tuned_base_change_and_drop():
    n = gate_numbers(_request("evaluation", attempt=1,
                              targets=_rows(accuracy=(0.2, 0.9), arc_accuracy=(0.7, 0.68))))
    assert n["accuracy"] == 0.9 and n["accuracy_base"] == 0.2
    assert n["accuracy_change"] == pytest.approx(0.7) and n["arc_easy_drop"] == pytest.approx(2)
    assert n["attempt"] == 1


@pytest.mark.parametrize("text,said", [
    ("evaluation:\n  when: [accuracy >> 0.8]\n", "line 2, field evaluation.when[0]: cannot "
                                                 "read 'accuracy >> 0.8'"),
    ("strategy: passed\nlaunch: always\n", "line 2: unknown gate 'launch'"),
    ("safety: maybe\n", "line 1, field safety: 'maybe' is not a rule"),
    ("safety: [a, b\n", "not valid YAML"),
    ("- strategy\n", "expected one `gate: rule` a line"),
])
def test_a_bad_policy_file_names_file_line_and_field(tmp_path, text, said):
    path = tmp_path / "p.yaml"
    path.write_text(text)
    with pytest.raises(PolicyError) as err:
        load_policy(path)
    assert str(path) in str(err.value) and said in str(err.value)


def test_headless_run_with_a_policy_stops_at_the_unmet_condition(tmp_path, tiny_model,
                                                                   small_data):
    policy = tmp_path / "policy.yaml"
    policy.write_text("strategy: always\ndataset: always\ntraining: always\n"
                      "evaluation: {when: [accuracy >= 0.85]}\n")
    run_dir = tmp_path / "run"
    r = ftagent("run", "--goal", "route intents", "--data", str(small_data), "--model",
                str(tiny_model), "--run-dir", str(run_dir), "--max-attempts", "1",
                "--policy", str(policy))
    assert r.returncode == 3, r.stdout + r.stderr
    assert "Policy not met" in r.stdout and "'accuracy >= 0.85' not met" in r.stdout
    manifest = json.loads((run_dir / "manifest.json").read_text())
    assert manifest["waiting_at"] == "evaluation"
    made = manifest["decisions_made"]
    assert [d["gate"] for d in made] == ["strategy", "dataset", "training"]
    assert all(d["source"] == "policy" and str(policy) in d["detail"] for d in made)
    bad = ftagent("run", "--goal", "g", "--data", str(small_data), "--policy", str(policy),
                  "--approve", "all")
    assert bad.returncode == 2 and "leave out --approve" in bad.stderr


def test_chat_decisions_name_the_words_and_check_edits(tmp_path, tiny_model, small_data):
    from ftagent.agent.chat.assistant import Assistant

    ctx = ChatContext(runs_root=tmp_path / "runs", model=str(tiny_model))
    bot = Assistant(ctx)
    "".join(bot.reply(f"fine-tune a model to route messages using {small_data}"))
    assert ctx.waiting_gate() == "strategy"
    assert "cannot change 'bogus'" in decide_gate(ctx, "edit", changes={"bogus": 2})
    assert ctx.waiting_gate() == "strategy"
    "".join(bot.reply("approve the strategy"))
    made = json.loads((ctx.run_dir / "manifest.json").read_text())["decisions_made"]
    assert made == [{**made[0], "gate": "strategy", "source": "chat",
                     "detail": "approve the strategy", "action": "approve"}]
