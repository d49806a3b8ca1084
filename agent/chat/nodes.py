"""The chat graph's nodes (agent/chat/graph.py draws how they connect).

Order of understanding a message, as always:
1. the deterministic intent parser (clear commands: "use rank 32", "looks good, go ahead");
2. with an LLM that calls tools (an OpenAI-compatible endpoint): the LLM picks among the
   agent's own tools, and only those;
3. otherwise a question: answered from the knowledge base, phrased by the LLM when there is
   one (local or remote), shown as the cited section when there is none.

Each node says its text as it goes (LangGraph's custom stream, so an LLM's answer streams)
and keeps it in the state's `said`, from which `answer` records the turn.
"""

from __future__ import annotations

import contextvars
import copy
import json

from ftagent.agent.chat import tools as T
from ftagent.agent.chat.graph import ChatState, Proposal, Resume, new_turn
from ftagent.agent.chat.intents import Intent, parse
from ftagent.agent.chat.llm import explain_error
from langgraph.config import get_stream_writer
from langgraph.graph import END
from langgraph.types import Command, interrupt

MAX_TOOL_ROUNDS = 4
LLM_HISTORY = 20  # the last messages of the conversation an LLM sees (graph keeps 40)
REMEMBERED_CHARS = 4000  # of one answer, kept in the conversation
HELP = """I can run the whole fine-tuning workflow from a conversation. Try:
- "fine-tune a model to route banking questions using tools/bundled/demo/support_intents.jsonl"
- "use rank 32", "learning rate 1e-4", "use qlora", "use Qwen/Qwen2.5-0.5B-Instruct"
- "looks good, go ahead" / "reject: too slow" / "stop"
- "status", "show my runs", "resume RUN_ID"
- "explain the plan", "what is macro-F1?", "why is validation loss going up?"
- any fine-tuning question ("should I use RAG or fine-tuning?")"""

# The tool each parsed intent runs: actions read the same with or without an LLM.
# Tools that decide gates are never given to an LLM; if it calls one anyway (it may know
# the names from an earlier conversation), the call becomes a proposal for the person.
PROPOSED = {"approve_gate": ("approve", ""), "reject_gate": ("reject", ""),
            "stop_run": ("reject", "stop")}
TOOL_OF = {"approve": "approve_gate", "reject": "reject_gate", "stop": "stop_run",
           "status": "show_status", "diagnose": "diagnose_run", "resume": "resume_run"}
# ChatContext fields that make a conversation (besides the run and the proposal).
SAVED = ("goal", "data_path", "model", "pending_config", "undo_log")


def run_intent(ctx: T.ChatContext, intent: Intent) -> str:
    """Carry out a parsed intent through the same tools an LLM would call."""
    a = intent.args
    match intent.action:
        case "start_workflow":
            return T.start_workflow(ctx, a.get("goal", ""), a.get("data_path", ""),
                                    a.get("model", ""))
        case "set_data":
            return T.set_data(ctx, a["data_path"])
        case "set_model":
            return T.set_model(ctx, a["model"])
        case "set_config":
            return T.set_config(ctx, a["changes"])
        case "approve":
            return T.approve_gate(ctx, a.get("gate", ""))
        case "reject":
            return T.reject_gate(ctx, a["reason"], a.get("gate", ""))
        case "stop":
            return T.stop_run(ctx)
        case "status":
            return T.show_status(ctx)
        case "list_runs":
            return T.list_runs(ctx)
        case "resume":
            return T.resume_run(ctx, a["run_id"])
        case "explain":
            return T.explain(ctx, a["topic"])
        case "diagnose":
            return T.diagnose_run(ctx, a.get("question", ""))
        case "undo":
            return T.undo(ctx)
        case "help":
            return HELP
    return HELP


def isolated(fn, *args, **kwargs):
    """Run a tool outside the chat graph's context. A tool may drive the fine-tuning
    workflow, itself a LangGraph graph with its own checkpointer and interrupts. Called in a
    node it would pick up this graph's config from a context variable: langgraph 1.2 drops
    the inherited checkpoint keys when a graph is given its own thread_id, but callbacks,
    tags and metadata still flow in (older versions ran it as this graph's subgraph). An
    empty context keeps the workflow run independent of the chat turn that started it."""
    return contextvars.Context().run(fn, *args, **kwargs)


def snapshot(ctx: T.ChatContext) -> dict:
    """The conversation's part of the context as plain data (for the checkpoint)."""
    return {"run_dir": str(ctx.run_dir) if ctx.run_dir else None,
            **copy.deepcopy({k: getattr(ctx, k) for k in SAVED})}


def restore(ctx: T.ChatContext, saved: dict) -> None:
    """Fill what the caller left unset from a saved conversation: a caller that names a
    run (`--run`, the app's current run) keeps it."""
    from pathlib import Path

    if ctx.run_dir is None and saved.get("run_dir"):
        ctx.run_dir = Path(saved["run_dir"])
    for key in SAVED:
        if not getattr(ctx, key) and saved.get(key):
            setattr(ctx, key, copy.deepcopy(saved[key]))


def gate_summary(ctx: T.ChatContext, gate: str) -> str:
    """The evidence the workflow gave for a gate: from the last drive, else the run's
    events (after a restart)."""
    request = getattr(ctx.last_outcome, "request", None) or {}
    if request.get("gate") == gate:
        return request.get("summary", "")
    if ctx.run_dir is None:
        return ""
    from ftagent.agent.service.runs import read_events

    return next((e.get("summary", "") for e in reversed(read_events(ctx.run_dir))
                 if e.get("type") == "gate_waiting" and e.get("gate") == gate), "")


def proposal_payload(ctx: T.ChatContext, p: dict) -> Proposal:
    """A pending proposal as the interrupt shows it: what yes does, and the evidence."""
    changes = dict(p.get("changes") or {})
    said = ", ".join(f"{k}={v}" for k, v in changes.items())
    if p.get("kind") == "decision":
        gate, action = p.get("gate"), p.get("action", "approve")
        what = f"{action} the {gate} gate" + (f" with {said}" if said else "")
        summary = gate_summary(ctx, gate) if gate else ""
        return Proposal(kind="decision", action=action, gate=gate, changes=changes,
                        reason=p.get("reason", ""), by=p.get("by", "llm"), summary=summary,
                        question=f"Apply the proposal: {what}?")
    return Proposal(kind="config", action="set", gate=None, changes=changes, reason="",
                    by=p.get("by", "llm"), summary="", question=f"Set {said}?")


def _refuses_tools(exc: Exception) -> bool:
    import openai

    return isinstance(exc, openai.BadRequestError) and "tools" in str(exc).lower()


class Nodes:
    """The nodes over one `Assistant`: its context, chat model and action log."""

    def __init__(self, bot) -> None:
        self.bot = bot

    @property
    def ctx(self) -> T.ChatContext:
        return self.bot.ctx

    def _write(self, piece: str) -> str:
        get_stream_writer()(piece)
        return piece

    def _said(self, state: ChatState, pieces: list[str], goto: str, **update) -> Command:
        return Command(goto=goto, update={"said": [*state.get("said", []), *pieces],
                                          **update})

    # ---------------------------------------------------------------- understand

    def understand(self, state: ChatState) -> Command:
        """The intent parser first; a question, or words it does not know, go to the LLM
        with tools when there is one, else to the knowledge base."""
        self.ctx.words, self.ctx.actor = state["text"].strip(), "person"
        intent = parse(state["text"])
        if intent is not None and intent.action != "question":
            self.ctx.proposal = None  # the person moved on
            return Command(goto="act", update={"intent": intent.model_dump()})
        offer = (intent.args.get("offer") or {}) if intent is not None else {}
        llm = self.bot.tool_calling and self.bot.model is not None
        return Command(goto="agent" if llm else "knowledge", update={"offer": offer})

    def act(self, state: ChatState) -> Command:
        """A parsed command: its tool, as the person's own action."""
        intent = Intent.model_validate(state["intent"])
        self.bot.actions.append(TOOL_OF.get(intent.action, intent.action))
        out = isolated(run_intent, self.ctx, intent)
        return self._said(state, [self._write(out)], "answer")

    # ---------------------------------------------------------------- the LLM

    def agent(self, state: ChatState) -> Command:
        """One LLM call with the agent's tools (and only those): tool calls go to `tools`,
        an answer ends the turn."""
        from langchain_core.messages import HumanMessage, messages_from_dict, messages_to_dict

        scratch = messages_from_dict(state.get("scratch") or []) or [HumanMessage(
            state["text"])]
        try:
            bound = self.bot.model.bind_tools(T.langchain_tools(self.ctx))
            reply = bound.invoke([self._system(), *self._history(state), *scratch])
        except Exception as exc:  # noqa: BLE001 - an unusable endpoint must not end the chat
            return self._llm_failed(state, exc)
        if not getattr(reply, "tool_calls", None):
            return self._said(state, [self._write(str(reply.content))], "answer")
        return Command(goto="tools", update={"scratch": messages_to_dict([*scratch, reply]),
                                             "rounds": state.get("rounds", 0) + 1})

    def tools(self, state: ChatState) -> Command:
        """Run the LLM's tool calls; each result is said and goes back to it, up to
        MAX_TOOL_ROUNDS calls of the LLM."""
        from langchain_core.messages import ToolMessage, messages_from_dict, messages_to_dict

        scratch = messages_from_dict(state["scratch"])
        available = {t.name: t for t in T.langchain_tools(self.ctx)}
        pieces = []
        for call in scratch[-1].tool_calls:
            result = self._call(call, available)
            scratch.append(ToolMessage(self._for_llm(result)[0], tool_call_id=call["id"]))
            pieces.append(self._write(result + "\n\n"))
        goto = "agent"
        if state.get("rounds", 0) >= MAX_TOOL_ROUNDS:
            pieces.append(self._write("(stopped after several tool calls; say what to do "
                                      "next)"))
            goto = "answer"
        return self._said(state, pieces, goto, scratch=messages_to_dict(scratch))

    def _call(self, call: dict, available: dict) -> str:
        name = call["name"]
        if name in PROPOSED:  # deciding is the person's: a proposal
            self.bot.actions.append("propose_decision")
            action, reason = PROPOSED[name]
            return isolated(T.propose, self.ctx, action,
                            str(call["args"].get("reason") or reason))
        tool = available.get(name)
        if tool is None:  # only the agent's own tools exist
            return f"There is no tool '{name}'."
        self.bot.actions.append(name)
        try:
            return str(isolated(tool.invoke, call["args"]))
        except Exception as exc:  # noqa: BLE001 - said to the LLM, which may correct itself
            return f"The tool {name} failed: {exc}"

    def _llm_failed(self, state: ChatState, exc: Exception) -> Command:
        if _refuses_tools(exc):  # e.g. a small local server: use it to phrase answers
            self.bot.tool_calling = False
            self.bot.notice = "this endpoint does not take tools; actions come from commands"
            return self._said(state, [self._write(f"({self.bot.notice})\n\n")], "knowledge")
        return self._fallback(state, exc)

    def _fallback(self, state: ChatState, exc: Exception, pieces: tuple = ()) -> Command:
        from ftagent.agent.chat.knowledge import answer_without_llm

        said = [*pieces, self._write(
            f"(LLM unavailable: {explain_error(exc, self.bot.settings)})\n\n")]
        if not self.bot.actions or self.bot.actions[-1] != "search_knowledge":
            self.bot.actions.append("search_knowledge")
        said.append(self._write(answer_without_llm(state["text"])))
        return self._said(state, said, "answer")

    def _system(self):
        from ftagent.prompts import load
        from langchain_core.messages import SystemMessage

        c = self.ctx
        known = {"run": c.run_dir.name if c.run_dir else None, "waiting_at": c.waiting_gate(),
                 "goal": c.goal, "data": c.data_path, "model": c.model,
                 "pending_config": c.pending_config}
        return SystemMessage(load("assistant_system.md").replace(
            "{state}", json.dumps(known, default=str)))

    def _history(self, state: ChatState) -> list:
        """The conversation so far as the LLM may see it (the privacy filter applies to
        what the agent said: it may quote data rows)."""
        from langchain_core.messages import AIMessage, HumanMessage

        recent = (state.get("messages") or [])[-LLM_HISTORY:]
        said = self._for_llm(*(m["content"] for m in recent))
        return [HumanMessage(m["content"]) if m["role"] == "user" else AIMessage(s)
                for m, s in zip(recent, said, strict=True)]

    def _for_llm(self, *texts: str) -> list[str]:
        """Texts as the LLM may see them: a remote endpoint gets no quote of a data row
        unless the person allowed it, and never a row flagged as personal data."""
        if not self.bot.settings.remote() or not texts:
            return list(texts)
        from ftagent.agent.chat.privacy import data_files, for_llm, row_texts

        rows = row_texts(data_files(self.ctx.data_path, self.ctx.run_dir))
        return [for_llm(t, rows, self.bot.settings.share_rows) for t in texts]

    # ---------------------------------------------------------------- knowledge, answer

    def knowledge(self, state: ChatState) -> Command:
        """A question: retrieved knowledge, phrased by the LLM if there is one."""
        from ftagent.agent.chat.knowledge import answer_without_llm, grounding_prompt, retrieve

        self.bot.actions.append("search_knowledge")
        text, model = state["text"], self.bot.model
        if model is None:
            return self._said(state, [self._write(answer_without_llm(text))], "answer")
        passages = retrieve(text, k=3)
        pieces: list[str] = []
        try:
            for chunk in model.stream(grounding_prompt(text, passages)):
                pieces.append(self._write(str(chunk.content)))
        except Exception as exc:  # noqa: BLE001
            return self._fallback(state, exc, tuple(pieces))
        sources = "\n".join(f"[{i}] {p.cite}" for i, p in enumerate(passages, 1))
        if sources:
            pieces.append(self._write("\n\nSources:\n" + sources))
        return self._said(state, pieces, "answer")

    def answer(self, state: ChatState) -> Command:
        """End of a turn: a question's offer is made, the turn is remembered with the
        context; a proposal waiting for the person goes to `confirm`."""
        pieces = list(state.get("said") or [])
        if state.get("offer") and self.ctx.proposal is None:
            pieces.append(self._write(T.offer(self.ctx, state["offer"])))
        turn = [{"role": "user", "content": state["text"]},
                {"role": "assistant", "content": "".join(pieces)[:REMEMBERED_CHARS]}]
        proposal = copy.deepcopy(self.ctx.proposal)
        return Command(goto="confirm" if proposal else END,
                       update={"said": pieces, "messages": turn, "scratch": [], "offer": {},
                               "context": snapshot(self.ctx), "proposal": proposal})

    def confirm(self, state: ChatState) -> Command:
        """Pause for the person's answer to a proposal; only their yes carries it out.
        Other words are a new message (the proposal stays unless they move on)."""
        proposal = state["proposal"]
        reply: Resume = interrupt(proposal_payload(self.ctx, proposal))
        text = reply.get("text", "")
        self.ctx.words, self.ctx.actor = text.strip(), "person"
        self.ctx.proposal = copy.deepcopy(proposal)
        if reply.get("answer") not in ("yes", "no"):
            return Command(goto="understand", update=new_turn(text))
        yes = reply["answer"] == "yes"
        self.bot.actions.append("confirm" if yes else "decline")
        out = isolated(T.confirm if yes else T.decline, self.ctx)
        return Command(goto="answer", update={**new_turn(text), "said": [self._write(out)]})

