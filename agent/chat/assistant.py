"""The conversational agent: free text in, workflow actions and answers out.

Order of understanding a message:
1. the deterministic intent parser (clear commands: "use rank 32", "looks good, go ahead");
2. with an LLM that calls tools (an OpenAI-compatible endpoint): the LLM picks among the
   agent's own tools, and only those;
3. otherwise a question: answered from the knowledge base, phrased by the LLM when there is
   one (local or remote), shown as the cited section when there is none.
"""

from __future__ import annotations

import json
from collections.abc import Iterator

from ftagent.agent.chat import tools as T
from ftagent.agent.chat.intents import CONFIRM, DECLINE, Intent, parse
from ftagent.agent.chat.llm import LLMSettings, explain_error, make_chat_model

MAX_TOOL_ROUNDS = 4
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


class Assistant:
    """One conversation. `reply(text)` yields the answer in pieces (streamed with an LLM)."""

    def __init__(self, ctx: T.ChatContext, settings: LLMSettings | None = None,
                 chat_model=None, tool_calling: bool | None = None):
        self.ctx = ctx
        self.settings = settings or LLMSettings()
        self._model = chat_model  # injected (tests, TUI) or built on first use
        # Remote endpoints call tools; the small local model only phrases answers.
        self.tool_calling = (self.settings.backend == "openai" if tool_calling is None
                             else tool_calling)
        self.history: list = []  # langchain messages of this conversation
        self.actions: list[str] = []  # tool names called, in order (for evals and tests)
        self.notice: str = ""  # why the LLM was not used, said once

    @property
    def model(self):
        if self._model is None and self.settings.backend != "none":
            self._model = make_chat_model(self.settings)
        return self._model

    def reply(self, text: str) -> Iterator[str]:
        """The person's words: a yes/no to a pending proposal, a clear command (the intent
        parser), a question (answered; at most an offer, never a change), or the LLM."""
        said = self.ctx.words = text.strip()
        self.ctx.actor = "person"
        yes = bool(CONFIRM.match(said))
        if self.ctx.proposal is not None and (yes or DECLINE.match(said)):
            self.actions.append("confirm" if yes else "decline")
            out = T.confirm(self.ctx) if yes else T.decline(self.ctx)
            self._remember(text, out)
            yield out
            return
        intent = parse(text)
        if intent is not None and intent.action == "question":
            yield from self._question(text, intent.args.get("offer") or {})
            return
        if intent is not None:
            self.ctx.proposal = None  # the person moved on
            self.actions.append(TOOL_OF.get(intent.action, intent.action))
            out = run_intent(self.ctx, intent)
            self._remember(text, out)
            yield out
            return
        if self.tool_calling and self.model is not None:
            yield from self._tool_loop(text)
            return
        yield from self._answer(text)

    def _question(self, text: str, offer: dict) -> Iterator[str]:
        """Answered like any question; a change it names is offered, not made."""
        if self.tool_calling and self.model is not None:
            yield from self._tool_loop(text)
        else:
            yield from self._answer(text)
        if offer and self.ctx.proposal is None:
            yield T.offer(self.ctx, offer)

    def _remember(self, user: str, answer: str) -> None:
        from langchain_core.messages import AIMessage, HumanMessage

        self.history += [HumanMessage(user), AIMessage(answer)]
        self.history = self.history[-20:]

    def _system(self):
        from ftagent.prompts import load
        from langchain_core.messages import SystemMessage

        state = {"run": self.ctx.run_dir.name if self.ctx.run_dir else None,
                 "waiting_at": self.ctx.waiting_gate(), "goal": self.ctx.goal,
                 "data": self.ctx.data_path, "model": self.ctx.model,
                 "pending_config": self.ctx.pending_config}
        return SystemMessage(load("assistant_system.md").replace(
            "{state}", json.dumps(state, default=str)))

    def _tool_loop(self, text: str) -> Iterator[str]:
        """The LLM chooses tools; each call runs and its result goes back, up to
        MAX_TOOL_ROUNDS; the final answer streams."""
        from langchain_core.messages import HumanMessage, ToolMessage

        tools = {t.name: t for t in T.langchain_tools(self.ctx)}
        messages = [self._system(), *self.history, HumanMessage(text)]
        try:
            bound = self.model.bind_tools(list(tools.values()))
            for _ in range(MAX_TOOL_ROUNDS):
                reply = bound.invoke(messages)
                messages.append(reply)
                calls = getattr(reply, "tool_calls", None) or []
                if not calls:
                    answer = str(reply.content)
                    self._remember(text, answer)
                    yield answer
                    return
                for call in calls:
                    tool = tools.get(call["name"])
                    if call["name"] in PROPOSED:  # deciding is the person's: a proposal
                        self.actions.append("propose_decision")
                        action, reason = PROPOSED[call["name"]]
                        result = T.propose(self.ctx, action,
                                           str(call["args"].get("reason") or reason))
                    elif tool is None:  # only the agent's own tools exist
                        result = f"There is no tool '{call['name']}'."
                    else:
                        self.actions.append(call["name"])
                        result = tool.invoke(call["args"])
                    messages.append(ToolMessage(self._for_llm(str(result)),
                                                tool_call_id=call["id"]))
                    yield str(result) + "\n\n"
            yield "(stopped after several tool calls; say what to do next)"
        except Exception as exc:  # noqa: BLE001 - an unusable endpoint must not end the chat
            if _refuses_tools(exc):  # e.g. a small local server: use it to phrase answers
                self.tool_calling = False
                self.notice = "this endpoint does not take tools; actions come from commands"
                yield f"({self.notice})\n\n"
                yield from self._answer(text)
                return
            yield from self._fallback(text, exc)

    def _for_llm(self, text: str) -> str:
        """A tool's result as the LLM may see it: a remote endpoint gets no quote of a data
        row unless the person allowed it, and never a row flagged as personal data."""
        if not self.settings.remote():
            return text
        from ftagent.agent.chat.privacy import data_files, for_llm, row_texts

        rows = row_texts(data_files(self.ctx.data_path, self.ctx.run_dir))
        return for_llm(text, rows, self.settings.share_rows)

    def _answer(self, text: str) -> Iterator[str]:
        """A question: retrieved knowledge, phrased by the LLM if there is one."""
        from ftagent.agent.chat.knowledge import answer_without_llm, grounding_prompt, retrieve

        self.actions.append("search_knowledge")
        if self.model is None:
            out = answer_without_llm(text)
            self._remember(text, out)
            yield out
            return
        passages = retrieve(text, k=3)
        try:
            said = ""
            for chunk in self.model.stream(grounding_prompt(text, passages)):
                piece = str(chunk.content)
                said += piece
                yield piece
            sources = "\n".join(f"[{i}] {p.cite}" for i, p in enumerate(passages, 1))
            if sources:
                yield "\n\nSources:\n" + sources
            self._remember(text, said)
        except Exception as exc:  # noqa: BLE001
            yield from self._fallback(text, exc)

    def _fallback(self, text: str, exc: Exception) -> Iterator[str]:
        from ftagent.agent.chat.knowledge import answer_without_llm

        yield f"(LLM unavailable: {explain_error(exc, self.settings)})\n\n"
        if not self.actions or self.actions[-1] != "search_knowledge":
            self.actions.append("search_knowledge")
        yield answer_without_llm(text)


def _refuses_tools(exc: Exception) -> bool:
    import openai

    return isinstance(exc, openai.BadRequestError) and "tools" in str(exc).lower()
