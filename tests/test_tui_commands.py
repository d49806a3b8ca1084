"""The terminal app's pure parts: slash-command parsing and completion, the steps panel's
state, and checking config text with the project's config model. No Textual app here."""

import pytest
from ftagent.tools.config.train_config import TrainConfig, dump_yaml
from ftagent.tui.commands import COMMANDS, CommandError, complete, help_markdown, parse
from ftagent.tui.config_edit import ConfigTextError, config_changes, parse_changes, parse_config
from ftagent.tui.steps import StepTracker


def test_fine_tuning_with_quoted_goal_and_options():
    cmd = parse('/workflow:fine-tuning "support assistant" --data d.jsonl --model=m')
    assert cmd.name == "workflow:fine-tuning"
    assert cmd.args == {"goal": "support assistant", "data": "d.jsonl", "model": "m"}
    cmd = parse('/workflow:fine-tuning "g" --max-attempts 1')
    assert cmd.args == {"goal": "g", "max_attempts": "1"}


def test_options_in_any_order_and_required_options():
    cmd = parse("/workflow:model-evaluation --test t.jsonl --base b --tuned 'my dir/adapter'")
    assert cmd.args == {"base": "b", "tuned": "my dir/adapter", "test": "t.jsonl"}
    with pytest.raises(CommandError) as err:
        parse("/workflow:model-evaluation --base b")
    msg = str(err.value)
    assert "missing --tuned M, --test FILE" in msg
    assert "Usage: /workflow:model-evaluation --base M --tuned M --test FILE" in msg


@pytest.mark.parametrize("line, problem", [
    ("/bogus", "unknown command /bogus"),
    ("/statu", "Did you mean /status?"),
    ("/workflow:fine-tuning", 'missing "GOAL"'),
    ('/workflow:fine-tuning "g" --data', "--data needs a value"),
    ('/workflow:fine-tuning "g" --epochs 3', "unknown option --epochs"),
    ('/workflow:fine-tuning "g" extra', "unexpected argument 'extra'"),
    ('/workflow:fine-tuning "g', "cannot read the arguments"),
    ('/workflow:fine-tuning "g" --data a --data b', "--data given twice"),
    ("/resume", "missing RUN_ID"),
    ("/reject", "missing REASON"),
    ("/plan now", "unexpected argument 'now'"),
    ("status", "commands start with '/'"),
])
def test_bad_commands_give_one_line_with_the_usage(line, problem):
    with pytest.raises(CommandError) as err:
        parse(line)
    msg = str(err.value)
    assert problem in msg and "\n" not in msg
    name = line.split(" ")[0][1:]
    if line.startswith("/") and name in COMMANDS:
        assert msg.endswith(f"Usage: {COMMANDS[name].usage}")


def test_reject_takes_the_rest_of_the_line_as_written():
    assert parse("/reject it's too slow, use QLoRA").args == {
        "reason": "it's too slow, use QLoRA"}
    assert parse('/reject "stop"').args == {"reason": "stop"}


def test_completion_of_names_then_options():
    assert complete("/wor") == "/workflow:fine-tuning"  # table order: the main workflow first
    assert complete("/workflow:d") == "/workflow:dataset-engineering"
    assert complete("/app") == "/approve"
    assert complete("/approve") is None  # already whole
    assert complete("/workflow:fine-tuning \"g\" --") == '/workflow:fine-tuning "g" --data '
    assert (complete('/workflow:fine-tuning "g" --data x --')
            == '/workflow:fine-tuning "g" --data x --model ')
    assert complete("hello") is None and complete("/zz") is None


def test_help_lists_every_command_with_its_usage():
    text = help_markdown()
    for spec in COMMANDS.values():
        assert f"`{spec.usage}`" in text
    assert '/workflow:fine-tuning "GOAL" [--data PATH] [--model NAME] [--max-attempts N]' in text


def test_steps_follow_the_events_including_a_retrain():
    t = StepTracker()
    events = [
        {"type": "node_started", "node": "planner"},
        {"type": "node_finished", "node": "planner"},
        {"type": "gate_waiting", "gate": "strategy"},
    ]
    for e in events:
        t.apply(e)
    assert t.status["planner"] == "waiting" and t.gate == "strategy"
    for e in [
        {"type": "gate_decision", "gate": "strategy", "action": "approve"},
        {"type": "node_started", "node": "data_prep"},
        {"type": "node_finished", "node": "data_prep"},
        {"type": "node_started", "node": "config"},
        {"type": "node_finished", "node": "config", "attempt": 1},
        {"type": "node_started", "node": "trainer"},
        {"type": "train_progress", "step": 3, "max_steps": 8},
    ]:
        t.apply(e)
    assert t.status["planner"] == "done" and t.status["trainer"] == "running"
    assert t.detail["trainer"] == "step 3/8" and t.attempt == 1
    t.apply({"type": "node_finished", "node": "trainer"})
    t.apply({"type": "node_started", "node": "tester"})
    t.apply({"type": "node_finished", "node": "tester"})
    t.apply({"type": "node_started", "node": "config"})  # missed targets: retrain
    assert t.status["trainer"] == "pending" and t.status["tester"] == "pending"
    t.apply({"type": "node_finished", "node": "config", "attempt": 2})
    t.apply({"type": "node_started", "node": "trainer"})
    t.apply({"type": "run_failed", "error": "boom"})
    assert t.status["trainer"] == "failed" and t.attempt == 2


def test_a_rejected_gate_shows_as_rejected():
    t = StepTracker.from_events([
        {"type": "node_started", "node": "planner"},
        {"type": "node_finished", "node": "planner"},
        {"type": "gate_waiting", "gate": "strategy"},
        {"type": "gate_decision", "gate": "strategy", "action": "reject", "reason": "stop"},
    ])
    assert t.status["planner"] == "rejected" and t.gate is None


def _config(**kw):
    return TrainConfig(model="m", train_file="t.jsonl", output_dir="out", **kw)


def test_config_text_is_checked_by_the_config_model():
    text = dump_yaml(_config(), "a header")
    assert parse_config(text) == _config()
    for bad, field in [("learning_rate: -1", "learning_rate"),
                       ("learning_rate: fast", "learning_rate"),
                       ("lora:\n  r: 0", "lora.r"),
                       ("no_such_field: 1", "no_such_field")]:
        with pytest.raises(ConfigTextError) as err:
            parse_config(text + bad + "\n")
        assert field in str(err.value)
    with pytest.raises(ConfigTextError, match="not valid YAML at line"):
        parse_config(text + "learning_rate: [1\n")
    with pytest.raises(ConfigTextError, match="mapping"):
        parse_config("- a list\n")


def test_changes_are_the_fields_that_differ_dotted():
    old = _config()
    new = _config(learning_rate=5e-4, lora={"r": 32, "alpha": 64})
    assert config_changes(old, new) == {"learning_rate": 5e-4, "lora.r": 32, "lora.alpha": 64}
    assert config_changes(old, old) == {}


def test_gate_changes_mix_plan_choices_and_config_fields():
    assert parse_changes("# only comments\n") == {}
    assert parse_changes("method: qlora\nmin_gain: 0.2\nlora.r: 32\nmax_steps: 4\n") == {
        "method": "qlora", "min_gain": 0.2, "lora.r": 32, "max_steps": 4}
    for bad, said in [("max_steps: x", "max_steps"), ("lora.r: 0", "lora.r"),
                      ("bogus: 1", "cannot change 'bogus'; it accepts:"),
                      ("min_gain: lots", "min_gain")]:
        with pytest.raises(ConfigTextError) as err:
            parse_changes(bad)
        assert said in str(err.value)
