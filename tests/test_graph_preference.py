"""Preference pairs through the whole workflow: the plan is DPO, the trainer runs DPO, the
tester scores the pairs, and new data given at the evaluation gate is prepared and trained
on (keeping the first split)."""

from pathlib import Path

from ftagent.agent.graph.workflow import build_graph, open_checkpointer
from ftagent.agent.service.runs import STATE_DB, create_run
from langgraph.types import Command

HH_PAIRS = Path(__file__).resolve().parent / "assets" / "hh_rlhf_harmless_base"  # 80 rows


def pairs(path: Path, start: int, n: int) -> Path:
    rows = (HH_PAIRS / "train.jsonl").read_text(encoding="utf-8").splitlines()[start:start + n]
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return path


def approve_until_evaluation(graph, result, config):
    """Approve every gate up to the evaluation gate; (result, that gate, gates seen)."""
    gates, gate = [], None
    while "__interrupt__" in result and len(gates) < 8:
        gate = result["__interrupt__"][0].value
        gates.append(gate["gate"])
        if gate["gate"] == "evaluation":
            break
        result = graph.invoke(Command(resume={"action": "approve"}), config)
    return result, gate, gates


def test_dpo_run_is_evaluated_on_pairs_and_new_data_retrains(tmp_path, tiny_model):
    data = pairs(tmp_path / "hh.jsonl", 0, 40)
    more = pairs(tmp_path / "hh_more.jsonl", 40, 40)
    inputs = {"goal": "a more harmless assistant", "data_path": str(data),
              "model": str(tiny_model), "max_attempts": 1}
    run_dir = create_run(tmp_path / "run", "p1", inputs)
    graph = build_graph(open_checkpointer(run_dir / STATE_DB))
    config = {"configurable": {"thread_id": "p1"}}
    result = graph.invoke({"run_id": "p1", "run_dir": str(run_dir), **inputs}, config)
    strategy = result["__interrupt__"][0].value
    assert strategy["evidence"]["method"] == "lora" or "dpo" in strategy["summary"].lower()
    assert result["plan"]["objective"] == "dpo"
    assert strategy["evidence"]["targets"]["primary_metric"] == "preference_accuracy"
    result = graph.invoke(Command(resume={"action": "edit", "changes": {"max_steps": 2}}),
                          config)
    result, gate, gates = approve_until_evaluation(graph, result, config)
    assert gates == ["dataset", "training", "evaluation"]
    ev = result["eval_report"]
    assert ev["task_type"] == "preference" and ev["primary_metric"] == "preference_accuracy"
    assert ev["tuned"]["reward_accuracy"] is not None
    rows = {r["metric"]: r for r in gate["evidence"]["targets"]}
    assert rows["preference_accuracy"]["kind"] == "target"
    assert "loss" not in {m for m, r in rows.items() if r["kind"] == "target"}
    assert "| preference_accuracy |" in gate["summary"]

    # New data at the evaluation gate: prepared into data-2, checked, trained, evaluated.
    result = graph.invoke(Command(resume={"action": "edit",
                                          "changes": {"data_path": str(more)}}), config)
    result, gate, again = approve_until_evaluation(graph, result, config)
    assert again == ["dataset", "training", "evaluation"]
    assert result["data_path"] == str(more) and result["attempt"] == 2
    assert (run_dir / "data" / "train.jsonl").exists()
    assert (run_dir / "data-2" / "train.jsonl").exists()
    assert (run_dir / "eval" / "attempt-1" / "report.json").exists()
    assert (run_dir / "eval" / "attempt-2" / "report.json").exists()
    assert "data_path" not in (run_dir / "train" / "attempt-2" / "config.yaml").read_text()
