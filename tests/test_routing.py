import pytest
from ftagent.agent.graph.gates import GATES, DecisionError, GateRequest
from ftagent.agent.graph.routing import STOP, after_evaluation, after_gate, after_tester
from ftagent.agent.service.session import ApprovalPolicy


def state(action="approve", changes=None, attempt=1, max_attempts=2, met=True,
          changes_proposed=None):
    return {
        "decisions": {
            "evaluation": {"action": action, "changes": changes or {}},
            "strategy": {"action": action, "changes": {}},
        },
        "attempt": attempt,
        "max_attempts": max_attempts,
        "verdict": {"targets_met": met, "proposed_changes": changes_proposed},
    }


def test_reject_stops_other_gates():
    route = after_gate("strategy", "data_prep")
    assert route(state("approve")) == "data_prep"
    assert route(state("edit")) == "data_prep"
    assert route(state("reject")) == STOP


def test_missed_targets_loop_back_to_config_while_attempts_remain():
    proposed = {"num_epochs": 6}
    assert after_tester(state(met=False, attempt=1, changes_proposed=proposed)) == "config"
    assert after_tester(state(met=False, attempt=2, changes_proposed=proposed)) == \
        "gate_evaluation"
    assert after_tester(state(met=True, attempt=1)) == "gate_evaluation"
    # Nothing to change in the config (a data diagnosis): retraining would repeat itself.
    assert after_tester(state(met=False, attempt=1)) == "gate_evaluation"


def test_evaluation_decisions():
    assert after_evaluation(state("approve")) == "gate_safety"
    assert after_evaluation(state("reject", attempt=1)) == "config"
    assert after_evaluation(state("reject", attempt=2)) == STOP
    stop = state("reject", attempt=1)
    stop["decisions"]["evaluation"]["reason"] = "stop: good enough for now"
    assert after_evaluation(stop) == STOP
    assert after_evaluation(state("edit", {"learning_rate": 1e-4}, attempt=2)) == "config"
    assert after_evaluation(state("edit", {"data_path": "more.jsonl"})) == "data_prep"


def request(gate, passed=True):
    return GateRequest(gate=gate, title=GATES[gate], question="?", passed=passed, summary="")


def test_policy_all_approves_only_passing_checks_named_gates_always():
    policy = ApprovalPolicy.from_flags("all")
    assert policy.decide(request("training")).action == "approve"
    assert policy.decide(request("evaluation", passed=False)) is None
    named = ApprovalPolicy.from_flags("evaluation")
    assert named.decide(request("evaluation", passed=False)).action == "approve"
    assert named.decide(request("strategy")) is None


def test_policy_reject_and_edit_and_unknown_gates():
    policy = ApprovalPolicy.from_flags("all", reject="safety", reason="too risky")
    decision = policy.decide(request("safety"))
    assert decision.action == "reject" and decision.reason == "too risky"
    edit = ApprovalPolicy.from_flags(None, edits={"evaluation": {"lora.r": 32}})
    assert edit.decide(request("evaluation")).changes == {"lora.r": 32}
    with pytest.raises(DecisionError, match="unknown gate"):
        ApprovalPolicy.from_flags("strategy,trainig")


def test_strategy_reject_replans_until_the_limit_or_stop():
    from ftagent.agent.graph.routing import MAX_REPLANS, after_strategy

    def st(action, reason="", changes=None, rejects=1):
        record = {"gate": "strategy", "action": action, "reason": reason,
                  "changes": changes or {}}
        history = [{"gate": "strategy", "action": "reject"}] * rejects
        return {"decisions": {"strategy": record}, "history": history}

    assert after_strategy(st("approve", rejects=0)) == "data_prep"
    assert after_strategy(st("reject", "too slow")) == "planner"
    assert after_strategy(st("reject", "Stop, wrong goal.")) == STOP
    assert after_strategy(st("reject", "too slow", rejects=MAX_REPLANS + 1)) == STOP
    assert after_strategy(st("edit", changes={"method": "qlora"}, rejects=0)) == "planner"
    assert after_strategy(st("edit", changes={"lora.r": 32}, rejects=0)) == "data_prep"


def test_policy_reject_and_edit_answer_a_gate_once():
    from ftagent.agent.graph.gates import GateRequest

    policy = ApprovalPolicy.from_flags("none", reject="strategy", reason="too slow")
    req = GateRequest(gate="strategy", title="t", question="q", passed=True, summary="s")
    assert policy.decide(req).action == "reject"
    assert policy.decide(req) is None  # the re-made plan waits for a person
