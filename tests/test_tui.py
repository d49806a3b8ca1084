"""The terminal app, headless with Textual's pilot, driving the real engine on the tiny
random model: a whole workflow with every gate decided by pressing its buttons, a
rejected plan that is re-planned, resuming after a restart, command errors, the config
editor, the runs screen, and the real program under tmux."""

import io
import json
import shutil
import subprocess
import sys
import time

import pytest
from conftest import ROOT
from ftagent.tui.app import FtagentApp
from ftagent.tui.screens.config_editor import ConfigEditorScreen
from ftagent.tui.screens.confirm import ConfirmScreen
from ftagent.tui.screens.gate import GateScreen
from ftagent.tui.screens.help import HelpScreen
from ftagent.tui.screens.runs import RunsScreen
from ftagent.tui.widgets.loss_plot import LossPlot
from rich.console import Console
from textual.widgets import DataTable, Input, Label, Markdown, ProgressBar, TextArea

SIZE = (120, 40)


def screen_text(app) -> str:
    """What the terminal shows now, as plain text (the SVG screenshot's content)."""
    console = Console(width=app.size.width, height=app.size.height, file=io.StringIO(),
                      record=True, color_system=None, force_terminal=True)
    console.print(app.screen._compositor.render_update(
        full=True, screen_stack=app._background_screens, simplify=True))
    return console.export_text()


async def wait_for(pilot, condition, timeout: float = 120, what: str = "") -> None:
    start = time.monotonic()
    while not condition():
        if time.monotonic() - start > timeout:
            raise AssertionError(f"timed out waiting for {what or condition}\n"
                                 f"{screen_text(pilot.app)}")
        await pilot.pause(0.05)


def laid_out(app, screen_type, widget: str) -> bool:
    """The screen is on top and `widget` has a place on it (so a click lands)."""
    screen = app.screen
    return (isinstance(screen, screen_type) and bool(screen.query(widget))
            and screen.query_one(widget).region.width > 0)


async def next_gate(pilot, previous=None, timeout: float = 180) -> GateScreen:
    app = pilot.app
    await wait_for(pilot, lambda: laid_out(app, GateScreen, "#approve")
                   and app.screen is not previous, timeout, "a gate")
    return app.screen


async def type_line(pilot, line: str) -> None:
    """Type a short line key by key, then enter."""
    await pilot.press(*line, "enter")
    await pilot.pause()


async def submit(pilot, line: str) -> None:
    """Put a long line in the input and press enter (each typed key costs a UI cycle)."""
    pilot.app.main.query_one("#command", Input).value = line
    await pilot.press("enter")
    await pilot.pause()


def last_error(app) -> str:
    errors = app.chat.query(".error")
    return str(errors.last().content) if errors else ""


@pytest.mark.asyncio
async def test_whole_workflow_with_every_gate_decided_by_its_buttons(
    tmp_path, tiny_model, small_data
):
    app = FtagentApp(runs_root=tmp_path / "runs")
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, f'/workflow:fine-tuning "support assistant" --data {small_data} '
                     f"--model {tiny_model} --max-attempts 1")
        gate = await next_gate(pilot)
        assert gate.request["gate"] == "strategy"
        text = gate.query_one("#gate-text", Markdown).source
        assert "Strategy approved" in text and "## Approach" in text  # plan.md as evidence
        assert app.tracker.status["planner"] == "waiting"

        # Edit: the config editor checks the change before it is sent (2 steps: fast).
        await pilot.press("e")
        await wait_for(pilot, lambda: laid_out(app, ConfigEditorScreen, "#editor"))
        area = app.screen.query_one(TextArea)
        area.move_cursor(area.document.end)
        await pilot.press(*"max_steps: two", "ctrl+s")
        await pilot.pause()
        assert "max_steps" in str(app.screen.query_one("#editor-error").content)
        for _ in "two":
            await pilot.press("backspace")
        await pilot.press("2", "ctrl+s")

        gate = await next_gate(pilot, gate)
        assert gate.request["gate"] == "dataset"
        assert "Dataset report" in gate.query_one("#gate-text", Markdown).source
        await pilot.click("#approve")

        # Live training: the panel shows the bar, the counters and the curve.
        await wait_for(pilot, lambda: "step 2/2" in str(
            app.training.query_one("#train-stats", Label).content), 180, "training progress")
        assert app.training.has_class("shown")
        assert app.training.query_one(ProgressBar).total == 2
        assert app.training.query_one(LossPlot).train
        await wait_for(pilot, lambda: "Training (attempt 1)" in screen_text(app))

        gate = await next_gate(pilot, gate)
        assert gate.request["gate"] == "training"
        assert "steps in" in gate.query_one("#gate-text", Markdown).source
        assert len(gate.query_one("#gate-plot", LossPlot).train) == 2
        await wait_for(pilot, lambda: "loss by step" in screen_text(app))
        await pilot.click("#approve")
        for name in ("evaluation", "safety", "deployment"):
            gate = await next_gate(pilot, gate, timeout=240)
            assert gate.request["gate"] == name
            await pilot.click("#approve")

        await wait_for(pilot, lambda: "## Run done" in app.chat.text(), 120, "the report")
        chat = app.chat.text()
        assert "Held-out test split" in chat and "| accuracy |" in chat
        assert "◆ gate **strategy**: edit with `max_steps=2`" in chat
        assert all(s == "done" for s in app.tracker.status.values()), app.tracker.status
        await wait_for(pilot, lambda: "✓ Deploy" in screen_text(app)
                       and "status done" in screen_text(app))
        await type_line(pilot, "/train")
        assert "## Training (attempt-1)" in app.chat.text()
        assert app.chat.query(LossPlot)
        for line, said in [("/eval", "# Evaluation: base vs tuned"),
                           ("/deploy", "## Deployment check"), ("/plan", "## Risks"),
                           ("/data", "# Dataset report"), ("/status", "| Deploy | done |")]:
            await type_line(pilot, line)
            assert said in app.chat.text(), line

        # End with a served model: the merged folder behind the OpenAI-compatible API.
        await type_line(pilot, "/serve")
        await wait_for(pilot, lambda: "Serving **ftagent-" in app.chat.text(), 120, "server")
        import openai

        client = openai.OpenAI(base_url=app.server.base_url, api_key="x")
        assert [m.id for m in client.models.list().data] == [app.server.model_id]
        await type_line(pilot, "/serve stop")
        assert "Server stopped." in app.chat.text() and app.server is None
    manifest = json.loads((app.run_dir / "manifest.json").read_text())
    assert manifest["status"] == "done"
    made = manifest["decisions_made"]  # each one the person's, from a button in the app
    assert {d["gate"] for d in made} == {"strategy", "dataset", "training", "evaluation",
                                         "safety", "deployment"}
    assert all(d["source"] == "tui" and d["detail"].startswith(("Approve", "Edit", "Reject"))
               for d in made), made


@pytest.mark.asyncio
async def test_rejected_plan_is_replanned_and_a_restart_offers_to_resume(
    tmp_path, tiny_model, small_data
):
    runs = tmp_path / "runs"
    app = FtagentApp(runs_root=runs)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, f'/workflow:fine-tuning "support assistant" --data {small_data} '
                     f"--model {tiny_model}")
        gate = await next_gate(pilot)
        assert gate.request["evidence"]["method"] == "lora"
        await pilot.click("#reject")
        assert gate.query_one("#reason", Input).has_focus
        await pilot.press("enter")  # no reason: asked for one
        assert "reason is needed" in str(gate.query_one("#gate-error").content)
        await pilot.press(*"use QLoRA, memory is tight", "enter")
        gate = await next_gate(pilot, gate)
        assert gate.request["gate"] == "strategy"
        assert gate.request["evidence"]["method"] == "qlora"  # the planner read the reason
        assert "gate **strategy**: reject — use QLoRA" in app.chat.text()
        await pilot.press("escape")  # decide later, then leave
        await wait_for(pilot, lambda: app.screen is app.main)
        run_id = app.run_dir.name
    assert json.loads((runs / run_id / "manifest.json").read_text())["status"] == "waiting"

    again = FtagentApp(runs_root=runs)
    async with again.run_test(size=SIZE) as pilot:
        await wait_for(pilot, lambda: laid_out(again, ConfirmScreen, "#yes"), 30, "the offer")
        await wait_for(pilot, lambda: run_id in screen_text(again)
                       and "gate strategy" in screen_text(again))
        await pilot.click("#yes")
        gate = await next_gate(pilot)
        assert gate.request["evidence"]["method"] == "qlora" and again.run_dir.name == run_id
        await pilot.press("escape")
        await wait_for(pilot, lambda: again.screen is again.main)
        await submit(pilot, "/reject stop, wrong data")
        await wait_for(pilot, lambda: "## Run rejected" in again.chat.text(), 60)
        assert again.tracker.status["planner"] == "rejected"
    assert json.loads((runs / run_id / "manifest.json").read_text())["status"] == "rejected"


@pytest.mark.asyncio
async def test_bad_commands_answer_with_one_line_and_the_usage(tmp_path, bundled_model,
                                                              small_data):
    app = FtagentApp(runs_root=tmp_path / "runs", offer_resume=False)
    async with app.run_test(size=SIZE) as pilot:
        cases = [
            ("/bogus", "unknown command /bogus"),
            ("/workflow:fine-tuning", 'missing "GOAL". Usage: /workflow:fine-tuning "GOAL"'),
            ('/workflow:fine-tuning "g"', "needs --data PATH"),
            ('/workflow:fine-tuning "g" --data x.jsonl --max-attempts 0', "--max-attempts"),
            ("/workflow:model-evaluation --base b", "Usage: /workflow:model-evaluation"),
            ("/approve", "no gate is waiting"),
            ("/reject", "missing REASON"),
            ("/config", "no run yet"),
        ]
        for line, said in cases:
            await submit(pilot, line)
            error = last_error(app)
            assert said in error and "\n" not in error and "Traceback" not in error, error
        # A bad data file is an error line too, and makes no run folder.
        await submit(pilot, f'/workflow:fine-tuning "g" --data {tmp_path / "none.jsonl"}')
        await wait_for(pilot, lambda: "file not found" in last_error(app), 60)
        assert not app.busy and not (tmp_path / "runs").exists()

        box = app.main.query_one("#command", Input)
        await pilot.press(*"/wor")
        await wait_for(pilot, lambda: box._suggestion == "/workflow:fine-tuning")
        await pilot.press("tab")
        assert box.value == "/workflow:fine-tuning"
        box.value = ""
        await pilot.press("up")
        assert box.value.startswith('/workflow:fine-tuning "g" --data')
        await pilot.press("up", "down")
        assert box.value.startswith('/workflow:fine-tuning "g" --data')

        box.value = ""
        await submit(pilot, f"/workflow:dataset-engineering {small_data}")  # data checks alone
        await wait_for(pilot, lambda: "# Dataset report" in app.chat.text(), 60)
        assert "- verdict: **ready**" in app.chat.text()
        await type_line(pilot, "/help")
        assert "/workflow:dataset-engineering PATH" in app.chat.text()
        await type_line(pilot, "/clear")
        assert app.chat.text() == ""


@pytest.mark.asyncio
async def test_config_editor_rejects_invalid_values_and_saves_valid_ones(tmp_path):
    from ftagent.agent.service.runs import create_run
    from ftagent.tools.config.train_config import TrainConfig, save_config

    runs = tmp_path / "runs"
    run_dir = create_run(runs / "r1", "r1", {"goal": "route tickets", "data_path": "d.jsonl",
                                             "model": None, "max_attempts": 1})
    path = run_dir / "config.yaml"
    save_config(TrainConfig(model="m", train_file="t.jsonl", output_dir="out"), path)
    before = path.read_text()
    app = FtagentApp(runs_root=runs, offer_resume=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("ctrl+r")  # the runs screen: open the run from the table
        await wait_for(pilot, lambda: laid_out(app, RunsScreen, DataTable)
                       and not app.screen.query_one(DataTable).loading)
        table = app.screen.query_one(DataTable)
        table.move_cursor(row=table.get_row_index(str(run_dir)))  # other tests' runs too
        await wait_for(pilot, lambda: "route tickets" in screen_text(app))
        await pilot.press("enter")
        await wait_for(pilot, lambda: app.run_dir == run_dir)
        assert "**Run `r1`**" in app.chat.text()

        await type_line(pilot, "/config")
        await wait_for(pilot, lambda: laid_out(app, ConfigEditorScreen, "#editor"))
        editor = app.screen
        area = editor.query_one(TextArea)
        for bad, said in [("-1", "learning_rate: Input should be greater than 0"),
                          ("fast", "learning_rate: Input should be a valid number")]:
            area.text = before.replace("learning_rate: 0.0002", f"learning_rate: {bad}")
            await pilot.press("ctrl+s")
            assert said in str(editor.query_one("#editor-error").content)
            assert app.screen is editor and path.read_text() == before  # not saved
        area.text = before.replace("learning_rate: 0.0002", "learning_rate: 0.0005")
        await pilot.click("#save")
        await wait_for(pilot, lambda: app.screen is app.main)
        assert "learning_rate: 0.0005" in path.read_text()
        assert "Config saved (`learning_rate=0.0005`)" in app.chat.text()


@pytest.mark.asyncio
async def test_help_theme_and_command_palette(tmp_path):
    app = FtagentApp(runs_root=tmp_path / "runs", offer_resume=False)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await wait_for(pilot, lambda: isinstance(app.screen, HelpScreen))
        await wait_for(pilot, lambda: "command palette" in screen_text(app))
        assert "/workflow:model-evaluation" in (
            app.screen.query_one(Markdown).source)
        await pilot.press("escape")
        assert app.theme == "textual-dark"
        await pilot.press("ctrl+t")
        assert app.theme == "textual-light"
        await pilot.press("ctrl+p")
        await pilot.pause(0.2)
        await pilot.press(*"Runs: list")
        await pilot.pause(0.5)
        await pilot.press("enter")
        await wait_for(pilot, lambda: laid_out(app, RunsScreen, DataTable), 10)
        await wait_for(pilot, lambda: not app.screen.query_one(DataTable).loading)
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main)


def test_the_app_module_loads_no_heavy_library():
    code = ("import sys, ftagent.tui.app; print([m for m in ('torch', 'transformers', 'langgraph', "
            "'ftagent.tools.data', 'ftagent.agent.service.session') if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.skipif(shutil.which("tmux") is None, reason="tmux is not installed")
def test_the_real_program_under_tmux(tmp_path):
    r = subprocess.run([sys.executable, "evals/tui/tmux_drive.py", "--runs-dir",
                        str(tmp_path / "runs")], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "help shown: yes" in r.stdout and "exited: yes" in r.stdout


@pytest.mark.asyncio
async def test_free_text_goes_to_the_chat_agent(tmp_path, tiny_model, small_data, monkeypatch):
    """No LLM configured: the intent parser asks for the data, starts the run (the gate
    dialog opens) and a plain "looks good" approves it; a question gets a cited answer."""
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_BASE_URL", raising=False)
    app = FtagentApp(runs_root=tmp_path / "runs", offer_resume=False)
    async with app.run_test(size=SIZE) as pilot:
        await submit(pilot, "what learning rate should I use for LoRA?")
        await wait_for(pilot, lambda: "hyperparameters.md §" in app.chat.text(), 60)
        await submit(pilot, f"/model {tiny_model}")
        await submit(pilot, "fine-tune a model to route banking support messages")
        await wait_for(pilot, lambda: "Which data" in app.chat.text(), 60)
        await submit(pilot, f"use {small_data}")
        gate = await next_gate(pilot)
        assert gate.request["gate"] == "strategy"
        await pilot.press("escape")
        await wait_for(pilot, lambda: app.screen is app.main and not app.busy)
        await submit(pilot, "looks good, go ahead")
        gate = await next_gate(pilot, gate)
        assert gate.request["gate"] == "dataset"
        assert app.run_dir is not None and app.run_dir.parent == tmp_path / "runs"
