"""A provider's base model chosen from every front end reaches the same service calls and
the same provider plan: `ftagent plan` (a plan alone, no key and no network), the terminal
app's slash command and the chat agent's tool (each makes a run that waits at the strategy
gate with the provider plan). Real CLI process, real Textual app, real workflow."""

from __future__ import annotations

import json

import pytest
from conftest import DEMO_DATA, ftagent

GOAL = "route banking questions to the right intent"
OPENAI_MODEL = "gpt-4o-mini-2024-07-18"
KEY_ENV = "FTAGENT_TEST_FRONT_END_KEY"
KEY = "sk-front-end-3c9e"  # never sent anywhere: a plan needs no request


def test_ftagent_plan_prints_a_provider_plan_with_its_cost(tmp_path):
    out = ftagent("plan", "--goal", GOAL, "--data", str(DEMO_DATA), "--model", OPENAI_MODEL,
                  "--json", "--out", str(tmp_path / "plan"))
    assert out.returncode == 0, out.stderr
    plan = json.loads(out.stdout)
    assert plan["method"] == "provider" and plan["model"] == OPENAI_MODEL
    assert plan["provider"]["base_url"] is None and plan["usd_per_mtok"] == 3.0
    assert 0.05 < plan["cost_usd"] < 1.0 and plan["hyperparameters"]["n_epochs"] == 3
    assert json.loads((tmp_path / "plan" / "plan.json").read_text()) == plan
    assert "## Cost estimate" in (tmp_path / "plan" / "plan.md").read_text()

    other = ftagent("plan", "--goal", GOAL, "--data", str(DEMO_DATA), "--model", "tiny",
                    "--provider-url", "http://127.0.0.1:9/v1", "--provider-key-env", KEY_ENV,
                    "--budget", "1", "--json")
    plan = json.loads(other.stdout)
    assert plan["cost_usd"] is None and plan["provider"]["api_key_env"] == KEY_ENV
    assert any(r.startswith("Cost: unknown (this endpoint is not OpenAI's")
               for r in plan["reasons"])

    wrong = ftagent("plan", "--goal", GOAL, "--data", str(DEMO_DATA), "--model", OPENAI_MODEL,
                    "--hardware", "L4")
    assert wrong.returncode == 2
    assert "local models and GPUs do not apply to its plan" in wrong.stderr


@pytest.mark.asyncio
async def test_a_slash_command_with_a_provider_model_reaches_the_provider_plan(
        tmp_path, monkeypatch):
    from ftagent.tui.app import FtagentApp
    from test_tui import SIZE, next_gate, submit, wait_for

    monkeypatch.setenv(KEY_ENV, KEY)
    app = FtagentApp(runs_root=tmp_path / "runs", offer_resume=False)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, f'/model {OPENAI_MODEL} --provider-key-env {KEY_ENV}')
        await wait_for(pilot, lambda: f"`{OPENAI_MODEL}` at https://api.openai.com/v1 (key "
                       f"from {KEY_ENV})" in app.chat.text())
        await submit(pilot, f'/workflow:fine-tuning "{GOAL}" --data {DEMO_DATA}')
        gate = await next_gate(pilot)
        assert gate.request["gate"] == "strategy"
        evidence = gate.request["evidence"]
        assert evidence["method"] == "provider" and evidence["model"] == OPENAI_MODEL
        assert 0.05 < evidence["cost_usd"] < 1.0 and evidence["endpoint"] is None
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main)
        run_dir = app.run_dir
    inputs = json.loads((run_dir / "manifest.json").read_text())["inputs"]
    assert inputs["provider"]["api_key_env"] == KEY_ENV and inputs["model"] == OPENAI_MODEL
    for path in run_dir.rglob("*"):
        if path.is_file():
            assert KEY.encode() not in path.read_bytes(), path


def test_the_chat_agents_tool_takes_a_provider_model(tmp_path, monkeypatch):
    from ftagent.agent.chat import tools as T

    monkeypatch.setenv(KEY_ENV, KEY)
    ctx = T.ChatContext(runs_root=tmp_path / "runs")
    offered = {t.name: t for t in T.langchain_tools(ctx)}
    schema = offered["start_workflow"].args
    assert {"model", "provider_url", "provider_key_env"} <= set(schema)
    assert {"provider_url", "provider_key_env"} <= set(offered["set_model"].args)

    said = offered["set_model"].invoke({"model": "tiny", "provider_url": "http://h:1/v1"})
    assert "tiny at http://h:1/v1" in said and ctx.provider == {"base_url": "http://h:1/v1"}
    said = offered["start_workflow"].invoke({
        "goal": GOAL, "data_path": str(DEMO_DATA), "model": OPENAI_MODEL,
        "provider_key_env": KEY_ENV})  # a model named anew drops the URL chosen before
    assert "Started run" in said, said
    plan = json.loads((ctx.run_dir / "plan.json").read_text())
    assert plan["method"] == "provider" and plan["model"] == OPENAI_MODEL
    assert plan["provider"] == {**plan["provider"], "base_url": None, "api_key_env": KEY_ENV}
    assert plan["cost_usd"] > 0
    assert ctx.waiting_gate() == "strategy"
