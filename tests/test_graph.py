"""The graph on a tiny random-weight model: pause at gates, resume from SQLite in a new
graph instance, reject, and the trainer's resume after a kill."""

from ftagent.agent.graph.workflow import build_graph, open_checkpointer
from ftagent.agent.service.runs import STATE_DB, create_run
from langgraph.types import Command


def start(tmp_path, tiny_model, data, max_attempts=1):
    inputs = {
        "goal": "route support messages",
        "data_path": str(data),
        "model": str(tiny_model),
        "max_attempts": max_attempts,
    }
    run_dir = create_run(tmp_path / "run", "t1", inputs)
    return run_dir, {"run_id": "t1", "run_dir": str(run_dir), **inputs}


def test_stops_at_gate_and_resumes_in_a_new_graph_instance(tmp_path, tiny_model, small_data):
    run_dir, initial = start(tmp_path, tiny_model, small_data)
    config = {"configurable": {"thread_id": "t1"}}
    first = build_graph(open_checkpointer(run_dir / STATE_DB))
    result = first.invoke(initial, config)
    assert result["__interrupt__"][0].value["gate"] == "strategy"
    assert (run_dir / "plan.md").exists() and not (run_dir / "data").exists()
    first.checkpointer.conn.close()
    del first

    graph = build_graph(open_checkpointer(run_dir / STATE_DB))  # as a new process would
    assert graph.get_state(config).interrupts[0].value["gate"] == "strategy"
    seen = []
    for _ in range(6):
        result = graph.invoke(Command(resume={"action": "approve"}), config)
        if "__interrupt__" not in result:
            break
        seen.append(result["__interrupt__"][0].value["gate"])
    assert seen == ["dataset", "training", "evaluation", "safety", "deployment"]
    assert result["status"] == "done"
    assert result["decisions"]["strategy"]["action"] == "approve"
    for rel in (
        "data/train.jsonl",
        "config.yaml",
        "train/attempt-1/adapter/adapter_config.json",
        "eval/report.json",
        "adapter/adapter_model.safetensors",
        "merged/model.safetensors",
    ):
        assert (run_dir / rel).exists(), rel
    # Random weights may answer with nothing printable; loading and generating must work.
    d = result["deployment"]
    assert d["new_tokens"] > 0
    assert "loading or generating failed" not in d["error"]
    assert d["verification"]["ok"] and d["load_check"]["ftagent_importable"] is False
    assert d["gguf"]["n_tensors"] > 0 and (run_dir / "gguf" / "Modelfile").exists()
    assert d["served"]["models_listed"] == ["ftagent-t1"] and d["served"]["stream_chunks"] > 0
    assert (run_dir / "merged" / "README.md").exists()


def test_reject_ends_the_run_and_edit_changes_config(tmp_path, tiny_model, small_data):
    run_dir, initial = start(tmp_path, tiny_model, small_data)
    config = {"configurable": {"thread_id": "t1"}}
    graph = build_graph(open_checkpointer(run_dir / STATE_DB))
    graph.invoke(initial, config)
    edit = {"action": "edit", "changes": {"learning_rate": 0.005, "max_steps": 2}}
    result = graph.invoke(Command(resume=edit), config)
    assert result["__interrupt__"][0].value["gate"] == "dataset"
    result = graph.invoke(Command(resume={"action": "approve"}), config)
    assert result["__interrupt__"][0].value["gate"] == "training"
    assert "learning_rate: 0.005" in (run_dir / "config.yaml").read_text()
    assert result["train_result"]["global_step"] == 2
    result = graph.invoke(Command(resume={"action": "reject", "reason": "loss too high"}), config)
    assert result["status"] == "rejected"
    assert result["decisions"]["training"]["reason"] == "loss too high"
    assert not (run_dir / "eval").exists()


def test_run_killed_before_its_first_checkpoint_starts_over(tmp_path, tiny_model, small_data):
    from ftagent.agent.service.session import ApprovalPolicy, drive

    run_dir, _ = start(tmp_path, tiny_model, small_data)  # manifest written, no checkpoint yet
    events = []
    outcome = drive(run_dir, ApprovalPolicy(), None, events.append)
    assert outcome.status == "waiting" and outcome.gate == "strategy"
    assert events[0]["type"] == "run_resumed"
    assert [e["node"] for e in events if e["type"] == "node_finished"] == ["planner"]
    lines = (run_dir / "events.jsonl").read_text().splitlines()
    assert len(lines) == len(events)


def test_strategy_reject_replans_from_the_reason_and_edit_fixes_choices(
    tmp_path, tiny_model, small_data
):
    import json

    run_dir, initial = start(tmp_path, tiny_model, small_data)
    config = {"configurable": {"thread_id": "t1"}}
    graph = build_graph(open_checkpointer(run_dir / STATE_DB))
    first = graph.invoke(initial, config)["__interrupt__"][0].value
    assert first["gate"] == "strategy" and first["evidence"]["method"] == "lora"

    reject = {"action": "reject", "reason": "use QLoRA, memory is tight"}
    again = graph.invoke(Command(resume=reject), config)["__interrupt__"][0].value
    assert again["gate"] == "strategy" and again["evidence"]["method"] == "qlora"
    plan = json.loads((run_dir / "plan.json").read_text())
    assert plan["adapter"] == "qlora" and "method qlora" in plan["feedback_applied"][0]
    assert "Changed after your feedback" in (run_dir / "plan.md").read_text()

    edit = {"action": "edit", "changes": {"method": "lora", "min_gain": 0.2}}
    edited = graph.invoke(Command(resume=edit), config)["__interrupt__"][0].value
    assert edited["evidence"]["method"] == "lora"
    assert edited["evidence"]["targets"]["min_gain"] == 0.2

    stop = graph.invoke(Command(resume={"action": "reject", "reason": "stop, wrong data"}), config)
    assert stop["status"] == "rejected" and not (run_dir / "data").exists()


def test_missed_targets_are_diagnosed_and_the_retrain_applies_the_changes(
    tmp_path, tiny_model, small_data
):
    """A random tiny model cannot reach the targets in 4 steps: the tester diagnoses it
    (held-out loss barely moved: underfitting; 24 examples: too little data), attempt 2 is
    trained with the proposed changes, and both attempts' reports are kept."""
    import yaml

    run_dir, initial = start(tmp_path, tiny_model, small_data, max_attempts=2)
    config = {"configurable": {"thread_id": "t1"}}
    graph = build_graph(open_checkpointer(run_dir / STATE_DB))
    graph.invoke(initial, config)
    result = graph.invoke(Command(resume={"action": "edit", "changes": {"max_steps": 4}}),
                          config)
    gates = []
    while "__interrupt__" in result and len(gates) < 6:
        gate = result["__interrupt__"][0].value
        gates.append(gate["gate"])
        if gate["gate"] == "evaluation":
            break
        result = graph.invoke(Command(resume={"action": "approve"}), config)
    assert gates == ["dataset", "training", "training", "evaluation"]
    first = yaml.safe_load((run_dir / "train/attempt-1/config.yaml").read_text())
    second = yaml.safe_load((run_dir / "train/attempt-2/config.yaml").read_text())
    kinds = {d["kind"] for d in gate["evidence"]["diagnoses"]}
    assert {"underfitting", "too_little_data"} <= kinds
    changes = gate["evidence"]["proposed_changes"]
    assert changes["num_epochs"] == round(second["num_epochs"] * 2, 1)
    assert second["num_epochs"] == round(first["num_epochs"] * 2, 1)
    assert "Diagnosis:" in gate["summary"] and "needs a data change" in gate["summary"]
    for n in (1, 2):
        assert (run_dir / f"eval/attempt-{n}/report.json").exists()
