"""The chat agent's LangGraph graph on the real workflow (tiny model): conversations kept in
the SQLite checkpointer under $FTAGENT_HOME and continued after a restart (a new Assistant,
a new process), and proposals that pause the graph with an interrupt and apply only when
the person's resume says yes: in the API, the `ftagent chat` REPL and the app's dialog.

The LLM is the scripted fake chat model of tests/test_assistant.py (a remote tool-calling
LLM cannot run here); the graph, the checkpointer, the tools and the runs are real."""

import json
import os
import subprocess
import sys

import pytest
from conftest import ROOT, ftagent
from ftagent.agent.chat.assistant import Assistant
from ftagent.agent.chat.graph import conversations_db
from ftagent.agent.chat.tools import ChatContext
from ftagent.agent.service.runs import read_manifest
from langchain_core.messages import AIMessage
from test_assistant import ScriptedToolModel, call, say

GOAL = "fine-tune a model to route banking support messages"


def decisions(run_dir) -> list[dict]:
    return [json.loads(e) for e in (run_dir / "events.jsonl").read_text().splitlines()
            if '"gate_decision"' in e]


def test_a_conversation_resumes_after_a_restart(tmp_path, ftagent_home, tiny_model,
                                                small_data):
    runs = tmp_path / "runs"
    first = Assistant(ChatContext(runs_root=runs, model=str(tiny_model)), thread_id="t-restart")
    assert "Which data" in say(first, GOAL)
    first.close()
    assert conversations_db() == ftagent_home / "chat" / "conversations.sqlite"
    assert conversations_db().is_file()

    # A new Assistant on the same thread: the goal and model it was given are remembered,
    # so the data alone starts the run.
    second = Assistant(ChatContext(runs_root=runs), thread_id="t-restart")
    assert second.ctx.goal == "route banking support messages"
    assert second.ctx.model == str(tiny_model)
    assert [(m["role"], m["content"][:9]) for m in second.messages] == [
        ("user", GOAL[:9]), ("assistant", "Which dat")]
    assert "Started run" in say(second, f"use {small_data}")
    run_dir = second.ctx.run_dir
    second.close()

    # A new process (the CLI) on the same thread knows the run it started.
    r = ftagent("ask", "--runs-dir", str(runs), "--thread", "t-restart", "status")
    assert r.returncode == 0, r.stderr
    assert f"Run {run_dir.name}: waiting at the strategy gate" in r.stdout
    assert "conversation: t-restart" in r.stderr

    third = Assistant(ChatContext(runs_root=runs), thread_id="t-restart")
    assert third.ctx.run_dir == run_dir and len(third.messages) == 6
    say(third, "looks good, go ahead")  # the person's own command decides at once
    assert read_manifest(run_dir)["waiting_at"] == "dataset"
    other = Assistant(ChatContext(runs_root=runs), thread_id="t-other")
    assert other.ctx.goal is None and other.ctx.run_dir is None and other.messages == []


def test_a_gate_proposal_pauses_and_applies_only_on_the_persons_yes(tmp_path, tiny_model,
                                                                    small_data):
    runs = tmp_path / "runs"
    script = [call("approve_gate", {}, 0), AIMessage(content="I proposed approving."),
              call("reject_gate", {"reason": "too few rows"}, 1),
              AIMessage(content="I proposed rejecting.")]
    bot = Assistant(ChatContext(runs_root=runs, model=str(tiny_model)),
                    chat_model=ScriptedToolModel(responses=script), tool_calling=True,
                    thread_id="t-gate")
    assert "Started run" in say(bot, f"{GOAL} using {small_data}")  # the intent parser
    run_dir = bot.ctx.run_dir
    out = say(bot, "do whatever you think is right with the plan")
    assert "Proposal, not a decision:** approve the strategy gate" in out
    pending = bot.pending  # the graph is paused at its interrupt
    assert {k: pending[k] for k in ("kind", "action", "gate", "by")} == {
        "kind": "decision", "action": "approve", "gate": "strategy", "by": "llm"}
    assert pending["summary"] and pending["question"].startswith("Apply the proposal")
    assert read_manifest(run_dir)["waiting_at"] == "strategy" and not decisions(run_dir)
    bot.close()

    # After a restart the proposal still waits; the person's yes applies it.
    again = Assistant(ChatContext(runs_root=runs), chat_model=ScriptedToolModel(
        responses=script[2:]), tool_calling=True, thread_id="t-gate")
    assert again.pending == pending and again.ctx.proposal["gate"] == "strategy"
    "".join(again.resume(True, "y"))
    assert read_manifest(run_dir)["waiting_at"] == "dataset" and again.pending is None
    made = decisions(run_dir)
    assert len(made) == 1 and made[0]["action"] == "approve" and made[0]["detail"] == "y"
    assert made[0]["proposed_by"].startswith("llm: approve")

    # A proposed rejection the person declines changes nothing.
    assert "reject the dataset gate — too few rows" in say(again, "what about the data?")
    assert again.pending["action"] == "reject" and again.pending["reason"] == "too few rows"
    assert "Dropped; nothing changed." in "".join(again.resume(False))
    assert read_manifest(run_dir)["waiting_at"] == "dataset" and again.pending is None
    assert len(decisions(run_dir)) == 1 and again.ctx.proposal is None
    assert again.actions == ["confirm", "propose_decision", "decline"]


def test_other_words_while_paused_are_a_new_message(tmp_path):
    bot = Assistant(ChatContext(runs_root=tmp_path / "runs"))
    assert "Want me to set lora.r=4?" in say(bot, "would rank 4 be enough for this?")
    assert bot.pending["kind"] == "config" and bot.pending["changes"] == {"lora.r": 4}
    assert "No run yet" in say(bot, "status")  # the person moved on: the offer is dropped
    assert bot.pending is None and bot.ctx.pending_config == {}
    assert "There is nothing waiting for a yes." in "".join(bot.resume(True))
    assert bot.actions == ["search_knowledge", "show_status"]


def test_the_repl_asks_before_applying_a_proposal(tmp_path):
    def chat(answers: str) -> str:
        r = subprocess.run([sys.executable, "-m", "ftagent.agent.cli", "chat", "--runs-dir",
                            str(tmp_path / "runs"), "--thread", "t-repl"], input=answers,
                           capture_output=True, text=True, cwd=ROOT, timeout=300,
                           env={**os.environ})
        assert r.returncode == 0, r.stderr
        return r.stdout

    out = chat("would rank 4 be enough for this?\nn\nwould rank 8 be enough?\n")
    assert out.count("apply? [y/N]") == 2 and "Dropped; nothing changed." in out
    # It left with the second offer unanswered: the next session asks again first.
    out = chat("y\nstatus\nquit\n")
    assert "Set lora.r=8" in out.split("apply? [y/N]")[1] and "No run yet." in out


@pytest.mark.asyncio
async def test_the_app_asks_in_its_dialog_before_applying(tmp_path, monkeypatch):
    from ftagent.tui.app import FtagentApp
    from ftagent.tui.screens.confirm import ConfirmScreen
    from test_tui import SIZE, laid_out, screen_text, submit, wait_for

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    app = FtagentApp(runs_root=tmp_path / "runs", offer_resume=False)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "would rank 4 be enough for this?")
        await wait_for(pilot, lambda: laid_out(app, ConfirmScreen, "#yes"), 60, "the dialog")
        assert "Set lora.r=4?" in screen_text(app) and app._bot.ctx.pending_config == {}
        await pilot.click("#yes")
        await wait_for(pilot, lambda: "Set lora.r=4 (was" in app.chat.text(), 60)
        await submit(pilot, "would rank 8 be enough?")
        await wait_for(pilot, lambda: laid_out(app, ConfirmScreen, "#no"), 60, "the dialog")
        await pilot.press("n")
        await wait_for(pilot, lambda: "Dropped; nothing changed." in app.chat.text(), 60)
        assert app._bot.pending is None and app._bot.ctx.pending_config == {"lora.r": 4}
        assert app._bot.actions == ["search_knowledge", "confirm", "search_knowledge",
                                    "decline"]
