"""The chat agent as a LangGraph graph, checkpointed in SQLite per conversation.

    understand ─┬─> act ──────────────────────────┐        (a parsed command: its tool)
                ├─> agent <─> tools ──────────────┤        (an LLM with the agent's tools)
                └─> knowledge ────────────────────┤        (a question: the knowledge base)
                                                  v
                               answer ──> confirm ──(interrupt: the person's yes/no)
                                 │          ├─ yes/no ─> answer ─> END
                                 └─> END    └─ other words ─> understand

`agent` falls back to `knowledge` when the endpoint takes no tools or cannot be reached.
A proposal (an LLM's gate decision or setting, a question's offer) never applies itself:
`confirm` pauses the graph with `interrupt()` carrying a `Proposal`, and only a person's
`Command(resume=...)` saying yes carries it out.

State is plain data (strings, lists, dicts): the conversation, the turn's working values
and a snapshot of the `ChatContext`, so a new process with the same thread id continues the
conversation where it was, paused proposal included. The nodes (agent/chat/nodes.py) hold
what is not data: the context object, the chat model, the callbacks.
"""

from __future__ import annotations

import sqlite3
import uuid
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol, TypedDict

from langgraph.graph import END, START, StateGraph

MAX_MESSAGES = 40  # the conversation kept in the checkpoint (the LLM sees the last 20)
DB_NAME = "conversations.sqlite"


class Proposal(TypedDict):
    """What `confirm` asks the person about (the interrupt's payload)."""

    kind: Literal["decision", "config"]  # a gate decision, or settings to change
    action: str  # approve | reject | edit (a decision); set (settings)
    gate: str | None  # the gate the decision is for (None for settings)
    changes: dict[str, Any]  # settings that go with it
    reason: str  # the proposer's reason, recorded with the decision
    by: str  # llm | question: who proposed it
    summary: str  # the gate's evidence as the workflow gave it, for the person to judge
    question: str  # one line to show: what "yes" will do


class Resume(TypedDict):
    """The person's answer to a `Proposal` (the value given to `Command(resume=...)`)."""

    answer: Literal["yes", "no", "other"]  # other: they said something else instead
    text: str  # their words (recorded with the decision; a new message when "other")


def _keep_last(old: list, new: list) -> list:
    """The conversation grows by appending; the oldest messages fall off."""
    return (old + new)[-MAX_MESSAGES:]


class ChatState(TypedDict, total=False):
    # [{"role": "user"|"assistant", "content": str}]: each turn appends its two messages
    messages: Annotated[list[dict], _keep_last]
    text: str  # the person's message of this turn
    intent: dict | None  # the intent parser's reading of it ({"action", "args"})
    offer: dict  # settings a question named: offered at the end of the turn
    scratch: list[dict]  # this turn's LLM exchange (langchain messages as dicts)
    rounds: int  # LLM calls this turn (bounded)
    said: list[str]  # what this turn said so far, in pieces
    context: dict  # the ChatContext snapshot (run, goal, data, model, pending settings)
    proposal: dict | None  # the proposal waiting for the person, if any


def new_turn(text: str) -> dict:
    """The graph's input for a message: the turn's working values start empty."""
    return {"text": text, "intent": None, "offer": {}, "scratch": [], "rounds": 0,
            "said": []}


class ChatNodes(Protocol):
    """What the graph needs from the node implementation (agent/chat/nodes.py)."""

    def understand(self, state: ChatState) -> Any: ...
    def act(self, state: ChatState) -> Any: ...
    def agent(self, state: ChatState) -> Any: ...
    def tools(self, state: ChatState) -> Any: ...
    def knowledge(self, state: ChatState) -> Any: ...
    def answer(self, state: ChatState) -> Any: ...
    def confirm(self, state: ChatState) -> Any: ...


def build_chat_graph(nodes: ChatNodes, checkpointer=None):
    """Wire the nodes; each returns a `Command` naming where the conversation goes next."""
    g = StateGraph(ChatState)
    g.add_node("understand", nodes.understand, destinations=("act", "agent", "knowledge"))
    g.add_node("act", nodes.act, destinations=("answer",))
    g.add_node("agent", nodes.agent, destinations=("tools", "knowledge", "answer"))
    g.add_node("tools", nodes.tools, destinations=("agent", "answer"))
    g.add_node("knowledge", nodes.knowledge, destinations=("answer",))
    g.add_node("answer", nodes.answer, destinations=("confirm", END))
    g.add_node("confirm", nodes.confirm, destinations=("answer", "understand"))
    g.add_edge(START, "understand")
    return g.compile(checkpointer=checkpointer)


def conversations_db() -> Path:
    """Where conversations are kept: $FTAGENT_HOME/chat/conversations.sqlite."""
    from ftagent.tools.paths import ftagent_home

    return ftagent_home() / "chat" / DB_NAME


def open_conversations(db_path: str | Path | None = None):
    """The SQLite checkpointer of conversations (one thread per conversation). The
    connection is shared with the graph's worker thread, hence check_same_thread=False
    (SqliteSaver serialises its own use of it)."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    path = Path(db_path) if db_path else conversations_db()
    path.parent.mkdir(parents=True, exist_ok=True)
    return SqliteSaver(sqlite3.connect(str(path), check_same_thread=False))


def new_thread_id() -> str:
    return "chat-" + uuid.uuid4().hex[:12]


def proposal_markdown(p: Proposal) -> str:
    """A proposal as a person judges it (the REPL's prompt, the app's dialog): what yes
    does, who proposed it and why, and the gate's evidence."""
    parts = [f"**{p['question']}**"]
    if p.get("reason"):
        parts.append(f"Reason given: {p['reason']}")
    parts.append("Proposed by " + ("the LLM" if p.get("by") == "llm" else "the assistant, "
                                   "from your question") + "; nothing changes unless you "
                 "say yes.")
    if p.get("summary"):
        parts.append(f"Evidence at the {p['gate']} gate:\n\n{p['summary']}")
    return "\n\n".join(parts)
