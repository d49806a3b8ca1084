"""The conversational agent on the real workflow (tiny model): the deterministic path with
no LLM, and tool routing driven by an LLM.

The LLM here is langchain-core's fake chat model emitting scripted tool calls: it stands in
for a remote tool-calling LLM, which this machine cannot run. Everything it triggers is
real: the tools, the graph, the SQLite checkpoints, the run folders. The real HTTP path
(ftagent's own OpenAI-compatible server) is tested in tests/test_assistant_http.py."""

import json

from ftagent.agent.chat import tools as T
from ftagent.agent.chat.assistant import Assistant
from ftagent.agent.chat.tools import ChatContext
from ftagent.agent.service.runs import read_manifest
from langchain_core.language_models.fake_chat_models import FakeMessagesListChatModel
from langchain_core.messages import AIMessage


class ScriptedToolModel(FakeMessagesListChatModel):
    """Replies from a script; binding tools changes nothing (the script names them)."""

    def bind_tools(self, tools, **kwargs):
        return self


def call(name: str, args: dict, i: int = 0) -> AIMessage:
    return AIMessage(content="", tool_calls=[{"name": name, "args": args, "id": f"c{i}"}])


def say(bot: Assistant, text: str) -> str:
    return "".join(bot.reply(text))


def test_no_llm_conversation_asks_for_data_then_runs_and_steers(tmp_path, tiny_model,
                                                                small_data):
    ctx = ChatContext(runs_root=tmp_path / "runs", model=str(tiny_model))
    bot = Assistant(ctx)
    first = say(bot, "fine-tune a model to route banking support messages")
    assert "Which data" in first and ctx.run_dir is None
    started = say(bot, f"use {small_data}")
    assert "Started run" in started and "strategy" in started
    assert read_manifest(ctx.run_dir)["waiting_at"] == "strategy"
    asked = say(bot, "would rank 4 be enough for this?")
    assert "Want me to set lora.r=4?" in asked and ctx.pending_config == {}
    assert "Set lora.r=4 (was the plan's value)" in say(bot, "yes")
    assert "Set learning_rate=0.001" in say(bot, "set the learning rate to 1e-3")
    assert "learning_rate back to the plan's value" in say(bot, "undo")
    assert ctx.pending_config == {"lora.r": 4}
    after = say(bot, "looks good, go ahead")
    assert read_manifest(ctx.run_dir)["waiting_at"] == "dataset", after
    assert "strategy" in say(bot, "status") or "dataset" in say(bot, "status")
    say(bot, "stop")
    assert read_manifest(ctx.run_dir)["status"] == "rejected"
    assert bot.actions == ["start_workflow", "set_data", "search_knowledge", "confirm",
                           "set_config", "undo", "approve_gate", "show_status", "show_status",
                           "stop_run"]
    decisions = [json.loads(e) for e in (ctx.run_dir / "events.jsonl").read_text()
                 .splitlines() if '"gate_decision"' in e]
    assert decisions[0]["changes"] == {"lora.r": 4} and decisions[0]["action"] == "edit"
    assert decisions[0]["source"] == "chat" and decisions[0]["detail"] == "looks good, go ahead"
    made = read_manifest(ctx.run_dir)["decisions_made"]
    assert [(d["gate"], d["source"], d["detail"]) for d in made] == [
        ("strategy", "chat", "looks good, go ahead"), ("dataset", "chat", "stop")]


def test_an_llm_never_decides_a_gate_it_proposes_and_the_person_confirms(
        tmp_path, tiny_model, small_data):
    ctx = ChatContext(runs_root=tmp_path / "runs")
    script = [
        call("start_workflow", {"goal": "route support messages",
                                "data_path": str(small_data), "model": str(tiny_model)}),
        AIMessage(content="The plan is ready; approve it?"),
        call("run_shell", {"command": "rm -rf /"}, 1),  # not an agent tool: refused
        call("approve_gate", {}, 2),  # unasked, and not a tool it was given
        AIMessage(content="I approved it for you."),
        call("set_config", {"changes": {"num_epochs": 1}}, 3),
        AIMessage(content="Set to one epoch."),
    ]
    bot = Assistant(ctx, chat_model=ScriptedToolModel(responses=script), tool_calling=True)
    out = say(bot, "please train a router on my support data")
    assert "Started run" in out and out.endswith("approve it?")
    assert read_manifest(ctx.run_dir)["waiting_at"] == "strategy"

    out = say(bot, "hmm, can you do something clever")
    assert "There is no tool 'run_shell'" in out  # refused, said, and nothing ran
    assert "Proposal, not a decision:** approve the strategy gate" in out  # the person sees it
    assert read_manifest(ctx.run_dir)["waiting_at"] == "strategy"  # the run did not move
    assert not [e for e in (ctx.run_dir / "events.jsonl").read_text().splitlines()
                if '"gate_decision"' in e]
    offered = {t.name for t in T.langchain_tools(ctx)}
    assert not offered & {"approve_gate", "reject_gate", "stop_run"}

    out = say(bot, "yes")  # the person's one word decides
    assert read_manifest(ctx.run_dir)["waiting_at"] == "dataset", out
    made = read_manifest(ctx.run_dir)["decisions_made"]
    assert made[0]["source"] == "chat" and made[0]["detail"] == "yes"
    assert made[0]["proposed_by"].startswith("llm: approve")

    out = say(bot, "set it up for speed")  # an LLM's setting change is a proposal too
    assert "Proposal, not a change:** set num_epochs=1" in out and ctx.pending_config == {}
    assert "Dropped" in say(bot, "no") and ctx.proposal is None
    assert bot.actions == ["start_workflow", "propose_decision", "confirm", "set_config",
                           "decline"]


def test_an_unreachable_llm_falls_back_to_the_knowledge_base(tmp_path):
    from ftagent.agent.chat.llm import LLMSettings

    settings = LLMSettings(backend="openai", base_url="http://127.0.0.1:9/v1", model="m",
                           timeout_s=2, max_retries=0)
    bot = Assistant(ChatContext(runs_root=tmp_path), settings)
    out = say(bot, "how many epochs should I train for on a small dataset?")
    assert "LLM unavailable: cannot reach http://127.0.0.1:9/v1" in out
    assert "§" in out  # a cited knowledge section
