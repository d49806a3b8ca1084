"""The conversational agent: free text in, workflow actions and answers out.

A message goes through the chat graph (agent/chat/graph.py; its nodes in
agent/chat/nodes.py): the deterministic intent parser first, then an LLM with the agent's
own tools (when there is one that calls tools), then the knowledge base. The conversation
is checkpointed in SQLite under $FTAGENT_HOME by thread id, so a new `Assistant` with the
same `thread_id` (a new process) continues it: its messages, its run, its settings, and a
proposal still waiting for the person.

A proposal (an LLM's gate decision or setting, a question's offer) pauses the graph with
an interrupt; `pending` shows it, and the person's answer resumes it: their next message
("yes", "no", or anything else) or `resume(yes)` from a UI's yes/no prompt.
"""

from __future__ import annotations

from collections.abc import Iterator

from ftagent.agent.chat import tools as T
from ftagent.agent.chat.graph import (
    Proposal,
    Resume,
    build_chat_graph,
    new_thread_id,
    new_turn,
    open_conversations,
)
from ftagent.agent.chat.intents import CONFIRM, DECLINE
from ftagent.agent.chat.llm import LLMSettings, make_chat_model
from ftagent.agent.chat.nodes import (
    HELP,
    MAX_TOOL_ROUNDS,
    PROPOSED,
    TOOL_OF,
    Nodes,
    restore,
    run_intent,
)

__all__ = ["HELP", "MAX_TOOL_ROUNDS", "PROPOSED", "TOOL_OF", "Assistant", "run_intent"]
RECURSION_LIMIT = 64  # graph steps in one call: a turn, and a second after "other words"


class Assistant:
    """One conversation. `reply(text)` yields the answer in pieces (streamed with an LLM).

    `thread_id` names the conversation in the checkpoint (a new one when not given);
    `db_path` the SQLite file (default $FTAGENT_HOME/chat/conversations.sqlite)."""

    def __init__(self, ctx: T.ChatContext, settings: LLMSettings | None = None,
                 chat_model=None, tool_calling: bool | None = None,
                 thread_id: str | None = None, db_path=None):
        self.ctx = ctx
        self.settings = settings or LLMSettings()
        self._model = chat_model  # injected (tests, TUI) or built on first use
        # Remote endpoints call tools; the small local model only phrases answers.
        self.tool_calling = (self.settings.backend == "openai" if tool_calling is None
                             else tool_calling)
        self.actions: list[str] = []  # tool names called, in order (for evals and tests)
        self.notice: str = ""  # why the LLM was not used, said once
        self.thread_id = thread_id or new_thread_id()
        self._saver = open_conversations(db_path)
        self._graph = build_chat_graph(Nodes(self), self._saver)
        self._config = {"configurable": {"thread_id": self.thread_id},
                        "recursion_limit": RECURSION_LIMIT}
        self._restore()

    @property
    def model(self):
        if self._model is None and self.settings.backend != "none":
            self._model = make_chat_model(self.settings)
        return self._model

    def reply(self, text: str) -> Iterator[str]:
        """The person's words: while a proposal waits, they answer it ("yes"/"no") or are
        a new message; otherwise a new turn."""
        if self.pending is None:
            yield from self._run(new_turn(text))
            return
        said = text.strip()
        answer = "yes" if CONFIRM.match(said) else "no" if DECLINE.match(said) else "other"
        yield from self._resume(Resume(answer=answer, text=text))

    def resume(self, yes: bool, words: str = "") -> Iterator[str]:
        """The person's yes or no to the pending proposal (a UI's confirmation prompt);
        `words` is what they typed or pressed, recorded with a decision."""
        if self.pending is None:
            yield "There is nothing waiting for a yes."
            return
        yield from self._resume(Resume(answer="yes" if yes else "no",
                                       text=words or ("yes" if yes else "no")))

    @property
    def pending(self) -> Proposal | None:
        """The proposal the conversation is paused on, if any (the interrupt's payload)."""
        interrupts = self._graph.get_state(self._config).interrupts
        return interrupts[0].value if interrupts else None

    @property
    def messages(self) -> list[dict]:
        """The conversation so far (the checkpoint keeps the last 40 messages)."""
        return list(self._graph.get_state(self._config).values.get("messages") or [])

    @property
    def history(self) -> list:
        """The conversation as langchain messages."""
        from langchain_core.messages import AIMessage, HumanMessage

        return [HumanMessage(m["content"]) if m["role"] == "user" else AIMessage(m["content"])
                for m in self.messages]

    def close(self) -> None:
        self._saver.conn.close()

    def _resume(self, answer: Resume) -> Iterator[str]:
        from langgraph.types import Command

        yield from self._run(Command(resume=answer))

    def _run(self, payload) -> Iterator[str]:
        # "exit": one checkpoint per call (at its end, or where it pauses), not one per
        # node: a turn cut short is asked again; the workflow keeps its own checkpoints.
        for piece in self._graph.stream(payload, self._config, stream_mode="custom",
                                        durability="exit"):
            yield str(piece)

    def _restore(self) -> None:
        """Continue a saved conversation: its context where the caller set none, and the
        proposal it is paused on."""
        snap = self._graph.get_state(self._config)
        if not snap.values:
            return
        restore(self.ctx, snap.values.get("context") or {})
        if snap.interrupts:
            self.ctx.proposal = snap.values.get("proposal")
