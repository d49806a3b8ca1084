"""The assistant's tools: the only things the chat (an LLM, or the intent parser) can do.
Each is a typed function over the conversation's `ChatContext`, returning text for the
person (and for the LLM). No shell, no file writes beyond the workflow's own run folders.

Decisions belong to the person. When an LLM calls a tool (`ctx.actor == "llm"`), anything
that would decide a gate or change a setting becomes a *proposal* the person confirms with
one word ("yes"); the LLM is never given a tool that decides.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ftagent.agent.service.new_run import InputError
from pydantic import BaseModel, ConfigDict, Field


class ChatContext(BaseModel):
    """What the conversation knows: the current run and what is set before one starts."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    runs_root: Path
    run_dir: Path | None = None
    goal: str | None = None
    data_path: str | None = None
    model: str | None = None
    provider: dict[str, Any] = Field(default_factory=dict)  # base_url, api_key_env of `model`
    pending_config: dict[str, Any] = Field(default_factory=dict)  # applied at the next gate
    max_attempts: int = 2
    on_event: Callable[[dict], None] | None = None  # progress of a driven run
    last_outcome: Any = None  # what the last drive returned (a UI shows its gate)
    words: str = ""  # the person's exact words being handled (recorded with a decision)
    actor: str = "person"  # person | llm: who is calling the tools right now
    proposal: dict[str, Any] | None = None  # an LLM's proposal or a question's offer
    undo_log: list[dict[str, Any]] = Field(default_factory=list)  # settings said in chat

    def waiting_gate(self) -> str | None:
        if self.run_dir is None:
            return None
        from ftagent.agent.service.runs import read_manifest

        return read_manifest(self.run_dir).get("waiting_at")


def _drive(ctx: ChatContext, policy, initial: dict | None = None) -> str:
    from ftagent.agent.service.outcome import chat_text
    from ftagent.agent.service.session import drive

    outcome = drive(ctx.run_dir, policy, initial, ctx.on_event)
    ctx.last_outcome = outcome
    return chat_text(outcome)


# ---------------------------------------------------------------- the tools


def start_workflow(ctx: ChatContext, goal: str = "", data_path: str = "",
                   model: str = "", provider_url: str = "",
                   provider_key_env: str = "") -> str:
    """Start the fine-tuning workflow for a goal on a data file (JSONL/CSV/Parquet); runs
    until the first quality gate. Asks for whatever is missing instead of guessing. An
    OpenAI model (e.g. gpt-4o-mini-2024-07-18) is fine-tuned at OpenAI; with provider_url
    (an OpenAI-compatible fine-tuning API) the model is that provider's; provider_key_env
    names the environment variable holding its key (never the key itself)."""
    from ftagent.agent.service.new_run import create_workflow_run
    from ftagent.agent.service.session import ApprovalPolicy, initial_state

    ctx.goal = goal or ctx.goal
    ctx.data_path = data_path or ctx.data_path
    if model or provider_url or provider_key_env:
        _choose_model(ctx, model, provider_url, provider_key_env)
    if not ctx.goal:
        return "What should the tuned model do? (e.g. \"route support tickets to a team\")"
    if not ctx.data_path:
        return (f"Which data should I train on for \"{ctx.goal}\"? Give a file path "
                "(JSONL, CSV or Parquet; e.g. tools/bundled/demo/support_intents.jsonl).")
    advice = rag_advice(ctx.goal)
    try:
        ctx.run_dir = create_workflow_run(ctx.goal, ctx.data_path, ctx.model, ctx.runs_root,
                                          ctx.max_attempts, provider=ctx.provider)
    except InputError as exc:
        return f"I could not start: {exc}"
    text = _drive(ctx, ApprovalPolicy(), initial_state(ctx.run_dir))
    return (advice + "\n\n" if advice else "") + f"Started run {ctx.run_dir.name}. " + text


RAG_WORDS = ("documentation", "docs", "knowledge base", "wiki", "latest", "up-to-date",
             "up to date", "policies", "cite", "citations", "manual")


def rag_advice(goal: str) -> str:
    low = goal.lower()
    if any(w in low for w in RAG_WORDS):
        return ("Note: answering from documents that change (docs, policies, a wiki) is "
                "usually better served by retrieval (RAG): fine-tuning teaches form and tone, "
                "not facts that must stay current or be cited. I will still plan the "
                "fine-tune; the plan also says whether few-shot prompting may be enough.")
    return ""


def decide_gate(ctx: ChatContext, action: str, reason: str = "", gate: str = "",
                changes: dict | None = None, proposed_by: str | None = None) -> str:
    """Approve, reject (with the reason, which the workflow uses) or edit the waiting gate:
    for the person only. Called on an LLM's behalf it becomes a proposal."""
    from ftagent.agent.graph.gates import GATE_EDITS, DecisionError
    from ftagent.agent.service.decisions import one_decision

    waiting = ctx.waiting_gate()
    if waiting is None:
        return "No run is waiting at a gate." + (" Start one first." if ctx.run_dir is None
                                                  else "")
    if gate and gate != waiting:
        return f"The run waits at the {waiting} gate, not {gate}."
    if ctx.actor != "person":
        return propose(ctx, action, reason, changes)
    # Settings said in chat go with the decision, where this gate takes edits.
    pending = ctx.pending_config if GATE_EDITS.get(waiting) else {}
    changes = {**pending, **(changes or {})}
    if action == "approve" and changes:
        action = "edit"
    try:
        policy = one_decision(waiting, action, reason or f"{action} in chat", changes,
                              source="chat", detail=ctx.words, proposed_by=proposed_by)
    except DecisionError as exc:
        return f"I cannot do that: {exc}"
    if pending:
        ctx.pending_config, ctx.undo_log = {}, []
    return _drive(ctx, policy)


def propose(ctx: ChatContext, action: str, reason: str = "", changes: dict | None = None
            ) -> str:
    """Keep an LLM's decision as a proposal; the person confirms it with one word."""
    waiting = ctx.waiting_gate()
    if waiting is None:
        return "No run is waiting at a gate: there is nothing to propose."
    if action not in ("approve", "reject", "edit"):
        return f"'{action}' is not a gate decision (approve, reject or edit)."
    ctx.proposal = {"kind": "decision", "action": action, "reason": reason, "gate": waiting,
                    "changes": changes or {}, "by": "llm"}
    what = {"approve": "approve", "reject": "reject", "edit": "edit"}[action]
    said = f" with {_said(changes)}" if changes else ""
    why = f" — {reason}" if reason else ""
    return (f"**Proposal, not a decision:** {what} the {waiting} gate{said}{why}. Gates are "
            "yours to decide: say \"yes\" to do this, \"no\" to drop it, or decide "
            "yourself (\"approve\", \"reject because ...\").")


def propose_decision(ctx: ChatContext, action: str, reason: str) -> str:
    """Propose approving, rejecting or editing the waiting quality gate, with your reason.
    You cannot decide gates: the person sees the proposal and confirms it or not."""
    return propose(ctx, action, reason)


def confirm(ctx: ChatContext) -> str:
    """The person said yes to the pending proposal or offer: carry it out as theirs."""
    p, ctx.proposal = ctx.proposal, None
    if p is None:
        return "There is nothing waiting for a yes."
    if p["kind"] == "config":
        return set_config(ctx, p["changes"])
    if ctx.waiting_gate() != p["gate"]:
        return f"The run no longer waits at the {p['gate']} gate; the proposal is dropped."
    by = p.get("by", "llm")
    return decide_gate(ctx, p["action"], p.get("reason", ""), p["gate"], p.get("changes"),
                       proposed_by=f"{by}: {p['action']}" + (f" ({p['reason']})"
                                                              if p.get("reason") else ""))


def decline(ctx: ChatContext) -> str:
    ctx.proposal = None
    return "Dropped; nothing changed."


def _said(changes: dict | None) -> str:
    return ", ".join(f"{k}={v}" for k, v in (changes or {}).items())


def offer(ctx: ChatContext, changes: dict) -> str:
    """A question named a change: offer it, change nothing."""
    ctx.proposal = {"kind": "config", "changes": changes, "by": "question"}
    return f"\n\nWant me to set {_said(changes)}? Say \"yes\" to set it; nothing has changed."


def set_data(ctx: ChatContext, data_path: str) -> str:
    """Use this data file: before a run, for the next start; at the evaluation gate, as
    new data to prepare and train on."""
    if not Path(data_path).expanduser().exists():
        return f"{data_path}: no such file. Give the path of a JSONL, CSV or Parquet file."
    ctx.data_path = data_path
    if ctx.waiting_gate() == "evaluation":
        return decide_gate(ctx, "edit", "new data", changes={"data_path": str(
            Path(data_path).expanduser().resolve())})
    if ctx.goal and (ctx.run_dir is None or ctx.waiting_gate() is None):
        return start_workflow(ctx)
    return f"Data set to {data_path}." + ("" if ctx.goal else " What should the model do?")


def set_model(ctx: ChatContext, model: str, provider_url: str = "",
              provider_key_env: str = "") -> str:
    """Use this base model (a bundled name, a local folder or a cached hub id; an OpenAI
    model such as gpt-4o-mini-2024-07-18, or any model with provider_url, is fine-tuned at
    that provider)."""
    from ftagent.agent.service.new_run import provider_settings
    from ftagent.tools.models import ModelNotFoundError, resolve_model

    try:
        settings = provider_settings(model, provider_url or None, provider_key_env or None)
        if settings is None:
            resolve_model(model)
    except (InputError, ModelNotFoundError) as exc:
        return str(exc)
    _choose_model(ctx, model, provider_url, provider_key_env)
    if settings is not None:  # a running plan cannot move to a provider: a new run can
        return (f"Base model set to {settings.describe()} (key from {settings.api_key_env}); "
                "it is used when the next workflow starts.")
    if ctx.waiting_gate() == "strategy":
        return decide_gate(ctx, "edit", "model chosen in chat", changes={"model": model})
    return f"Base model set to {model}; it is used when the next workflow starts."


def _choose_model(ctx: ChatContext, model: str, provider_url: str,
                  provider_key_env: str) -> None:
    from ftagent.agent.service.new_run import choose_model

    ctx.model, ctx.provider = choose_model(model, provider_url, provider_key_env,
                                           (ctx.model, ctx.provider))


def set_config(ctx: ChatContext, changes: dict) -> str:
    """Change training settings (e.g. {"lora.r": 32, "learning_rate": 1e-4}); checked
    against the config's fields and applied at the waiting gate or the next one."""
    from ftagent.agent.graph.gates import DecisionError, check_changes

    try:
        check_changes("strategy", changes)  # plan choices and config fields, checked
    except DecisionError as exc:
        return f"I cannot set that: {exc}"
    if ctx.actor != "person":
        ctx.proposal = {"kind": "config", "changes": changes, "by": "llm"}
        return (f"**Proposal, not a change:** set {_said(changes)}. Say \"yes\" to set it, "
                "\"no\" to drop it.")
    was = {k: _current(ctx, k) for k in changes}
    ctx.undo_log.append({"changes": changes, "pending_before": dict(ctx.pending_config)})
    ctx.pending_config.update(changes)
    said = ", ".join(f"{k}={v} (was {was[k]})" for k, v in changes.items())
    waiting = ctx.waiting_gate()
    when = (f"Approve the {waiting} gate to apply it (or say more changes)."
            if waiting in ("strategy", "dataset", "training", "evaluation")
            else "It applies at the next gate.")
    return f"Set {said}. {when} To undo, say \"undo\"."


def undo(ctx: ChatContext) -> str:
    """Take back the last setting said in chat (before it reached a gate)."""
    if not ctx.undo_log:
        return ("Nothing to undo: no setting said in chat is waiting for a gate "
                "(ones that reached a gate are in the run's config; change them again).")
    last = ctx.undo_log.pop()
    ctx.pending_config = last["pending_before"]
    back = ", ".join(f"{k} back to {_current(ctx, k)}" for k in last["changes"])
    return f"Undone: {back}."


def _current(ctx: ChatContext, key: str) -> str:
    """What a setting is now: said in chat, else the run's config, else the plan's."""
    if key in ctx.pending_config:
        return str(ctx.pending_config[key])
    cfg = Path(ctx.run_dir) / "config.yaml" if ctx.run_dir else None
    if cfg and cfg.exists():
        from ftagent.tools.config.train_config import load_config

        data: Any = load_config(cfg).model_dump()
        for part in key.split("."):
            data = data.get(part) if isinstance(data, dict) else None
        if data is not None:
            return str(data)
    return "the plan's value"


def show_status(ctx: ChatContext) -> str:
    """Where the current run stands: step, gate, model, method, metrics."""
    from ftagent.agent.service.runs import effective_status, read_manifest

    if ctx.run_dir is None:
        pending = {k: v for k, v in (("goal", ctx.goal), ("data", ctx.data_path),
                                     ("model", ctx.model)) if v}
        return "No run yet." + (f" Set so far: {json.dumps(pending)}." if pending else "")
    m = read_manifest(ctx.run_dir)
    status = effective_status(m)
    text = f"Run {m['run_id']}: {status}"
    if m.get("waiting_at"):
        text += f" at the {m['waiting_at']} gate"
    plan_file = Path(ctx.run_dir) / "plan.json"
    if plan_file.exists():
        plan = json.loads(plan_file.read_text())
        text += f"; {plan.get('method', '?').upper()} on {plan.get('model')}"
    last = _last_progress(ctx.run_dir)
    if last:
        text += f"; training step {last.get('step')}/{last.get('max_steps')}"
        if "loss" in last:
            text += f", loss {last['loss']:.4f}"
    return text + "."


def _last_progress(run_dir: Path) -> dict | None:
    from ftagent.agent.service.runs import read_events

    return next((e for e in reversed(read_events(run_dir)) if e.get("type") == "train_progress"),
                None)


def list_runs(ctx: ChatContext) -> str:
    """The known runs with their status."""
    from ftagent.agent.service.runs import list_runs as rows

    found = rows(ctx.runs_root)
    if not found:
        return "No runs yet."
    return "\n".join(f"- {r['run_id']}: {r['status']}"
                     + (f" at {r['gate']}" if r.get("gate") else "") + f" — {r['goal']}"
                     for r in found[-10:])


def resume_run(ctx: ChatContext, run_id: str) -> str:
    """Make a run current and continue it from its checkpoint (to its next gate)."""
    from ftagent.agent.service.runs import RunError, check_resumable, find_run
    from ftagent.agent.service.session import ApprovalPolicy

    try:
        folder = find_run(run_id, ctx.runs_root)
        ctx.run_dir = folder
        check_resumable(folder, run_id)
    except RunError as exc:
        return str(exc)
    return _drive(ctx, ApprovalPolicy())


def explain(ctx: ChatContext, topic: str) -> str:
    """Explain the current plan ("plan"), a metric or a fine-tuning term, from the
    project's knowledge base, with citations."""
    if topic.strip().lower() in ("plan", "the plan", "strategy") and ctx.run_dir:
        plan = Path(ctx.run_dir) / "plan.md"
        if plan.exists():
            return plan.read_text(encoding="utf-8")
    return search_knowledge(ctx, topic)


def search_knowledge(ctx: ChatContext, query: str) -> str:
    """Passages from the fine-tuning knowledge base (decision trees, hyperparameters, data
    formats, troubleshooting, evaluation, deployment), each with its source."""
    from ftagent.agent.chat.knowledge import retrieve

    found = retrieve(query, k=3)
    if not found:
        return "Nothing in the knowledge base matches that."
    return "\n\n".join(f"[{i}] {p.cite}\n{p.text}" for i, p in enumerate(found, 1))


def diagnose_run(ctx: ChatContext, question: str = "") -> str:
    """Diagnose the current run from its real metrics (training curves, evaluation) and the
    troubleshooting knowledge."""
    from ftagent.agent.chat.run_diagnosis import answer_about_run
    from ftagent.agent.chat.run_diagnosis import diagnose_run as diagnose

    if ctx.run_dir is None:
        return "There is no current run to diagnose; start or resume one."
    if question:
        return answer_about_run(question, ctx.run_dir)
    return diagnose(ctx.run_dir).markdown


def stop_run(ctx: ChatContext) -> str:
    """Stop the current run at its gate (it can be inspected, not continued)."""
    if ctx.waiting_gate() is None:
        return "Nothing to stop: no run is waiting at a gate."
    return decide_gate(ctx, "reject", "stop: the person stopped the run in chat")


def approve_gate(ctx: ChatContext, gate: str = "") -> str:
    """Approve the waiting quality gate (only when the person said so)."""
    return decide_gate(ctx, "approve", gate=gate)


def reject_gate(ctx: ChatContext, reason: str, gate: str = "") -> str:
    """Reject the waiting quality gate with the person's reason (the workflow uses it:
    re-plan, retrain or stop)."""
    return decide_gate(ctx, "reject", reason, gate=gate)


TOOLS = (start_workflow, set_data, set_model, set_config, approve_gate, reject_gate,
         stop_run, show_status, list_runs, resume_run, explain, search_knowledge,
         diagnose_run)
# What an LLM may call: no tool that decides a gate. It proposes; the person confirms.
LLM_TOOLS = (start_workflow, set_data, set_model, set_config, propose_decision, show_status,
             list_runs, resume_run, explain, search_knowledge, diagnose_run)


def langchain_tools(ctx: ChatContext) -> list:
    """The same functions as langchain-core tools bound to this conversation; an LLM gets
    these and nothing else."""
    import inspect

    from langchain_core.tools import StructuredTool

    def bind(fn):
        def bound(**kwargs):
            before, ctx.actor = ctx.actor, "llm"  # whatever it asks is a proposal
            try:
                return fn(ctx, **kwargs)
            finally:
                ctx.actor = before

        sig = inspect.signature(fn)
        bound.__name__, bound.__doc__ = fn.__name__, fn.__doc__
        bound.__signature__ = sig.replace(parameters=list(sig.parameters.values())[1:])
        bound.__annotations__ = {k: v for k, v in fn.__annotations__.items() if k != "ctx"}
        return bound

    return [StructuredTool.from_function(func=bind(fn), name=fn.__name__,
                                         description=" ".join((fn.__doc__ or "").split()))
            for fn in LLM_TOOLS]
