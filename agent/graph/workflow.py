"""The fine-tuning workflow as a LangGraph state machine.

planner -> [strategy] -> data_prep -> [dataset] -> config -> trainer -> [training] ->
tester -> (config again when targets are missed) -> [evaluation] -> [safety] ->
deployer -> [deployment] -> finish.  [x] = a quality gate that pauses for a person.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from ftagent.agent.graph import routing
from ftagent.agent.graph.gates import gate_node
from ftagent.agent.graph.nodes.config import config
from ftagent.agent.graph.nodes.data_prep import data_prep, dataset_request
from ftagent.agent.graph.nodes.deployer import deployer, deployment_request
from ftagent.agent.graph.nodes.planner import planner, strategy_request
from ftagent.agent.graph.nodes.tester import evaluation_request, safety_request, tester
from ftagent.agent.graph.nodes.trainer import trainer, training_request
from ftagent.agent.graph.state import WorkflowState
from langgraph.graph import END, START, StateGraph

NODES = ("planner", "data_prep", "config", "trainer", "tester", "deployer")


def finish(state: dict) -> dict:
    return {"status": "done"}


def stop_rejected(state: dict) -> dict:
    return {"status": "rejected"}


def build_graph(checkpointer=None):
    g = StateGraph(WorkflowState)
    for name, fn in [
        ("planner", planner),
        ("data_prep", data_prep),
        ("config", config),
        ("trainer", trainer),
        ("tester", tester),
        ("deployer", deployer),
        ("finish", finish),
        (routing.STOP, stop_rejected),
    ]:
        g.add_node(name, fn)
    for gate, build in [
        ("strategy", strategy_request),
        ("dataset", dataset_request),
        ("training", training_request),
        ("evaluation", evaluation_request),
        ("safety", safety_request),
        ("deployment", deployment_request),
    ]:
        g.add_node(f"gate_{gate}", gate_node(gate, build))

    g.add_edge(START, "planner")
    g.add_edge("planner", "gate_strategy")
    g.add_conditional_edges(
        "gate_strategy", routing.after_strategy, ["planner", "data_prep", routing.STOP]
    )
    g.add_edge("data_prep", "gate_dataset")
    g.add_conditional_edges("gate_dataset", routing.after_gate("dataset", "config"))
    g.add_edge("config", "trainer")
    g.add_edge("trainer", "gate_training")
    g.add_conditional_edges("gate_training", routing.after_gate("training", "tester"))
    g.add_conditional_edges("tester", routing.after_tester, ["config", "gate_evaluation"])
    g.add_conditional_edges(
        "gate_evaluation", routing.after_evaluation,
        ["config", "data_prep", "gate_safety", routing.STOP],
    )
    g.add_conditional_edges("gate_safety", routing.after_gate("safety", "deployer"))
    g.add_edge("deployer", "gate_deployment")
    g.add_conditional_edges("gate_deployment", routing.after_gate("deployment", "finish"))
    g.add_edge("finish", END)
    g.add_edge(routing.STOP, END)
    return g.compile(checkpointer=checkpointer)


def open_checkpointer(db_path: str | Path):
    """The SQLite checkpointer: every step is durable, so a killed run resumes."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    Path(db_path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(str(db_path), check_same_thread=False)
    return SqliteSaver(conn)
