import pytest
import yaml
from ftagent.tools.config.train_config import (
    TrainConfig,
    apply_overrides,
    default_config,
    dump_yaml,
    load_config,
    save_config,
)


def make(**kw):
    base = dict(model="m", method="lora", train_file="t.jsonl", val_file=None, output_dir="o")
    return default_config(**{**base, "n_train": 175, "params": 135_000_000, "bf16": False, **kw})


def test_yaml_round_trip_keeps_every_field_and_explains_it(tmp_path):
    cfg = make()
    path = save_config(cfg, tmp_path / "c.yaml", header="run X")
    text = path.read_text()
    assert text.startswith("# run X")
    assert "# LoRA rank" in text and "# peak learning rate" in text
    assert load_config(path) == cfg
    assert TrainConfig.model_validate(yaml.safe_load(dump_yaml(cfg))) == cfg


def test_defaults_scale_with_data_and_model():
    small, large = make(n_train=50), make(n_train=20_000)
    assert small.num_epochs > large.num_epochs
    assert make(params=8_000_000_000).learning_rate < make().learning_rate
    assert make(method="full", params=8_000_000_000).learning_rate <= 5e-5
    assert make(attempt=2).num_epochs > make(attempt=1).num_epochs


def test_overrides_apply_and_unknown_fields_fail():
    cfg = apply_overrides(make(), {"learning_rate": 5e-4, "lora.r": 32})
    assert cfg.learning_rate == 5e-4 and cfg.lora.r == 32
    with pytest.raises(ValueError, match="unknown config field 'lora.rank'"):
        apply_overrides(make(), {"lora.rank": 8})
    with pytest.raises(ValueError):
        apply_overrides(make(), {"learning_rate": -1})


def test_load_config_errors_name_file_and_field(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text(dump_yaml(make()).replace("batch_size: 8", "batch_size: zero"))
    with pytest.raises(ValueError, match=r"c.yaml: invalid config: batch_size"):
        load_config(path)


def test_resume_skips_a_checkpoint_killed_while_saving(tmp_path):
    from ftagent.tools.train.checkpoint import mark_complete
    from ftagent.tools.train.recipe import last_complete_checkpoint

    assert last_complete_checkpoint(tmp_path / "none") is None
    for step, state in [(5, "marked"), (10, "marked"), (15, "state-only"), (20, "weights")]:
        folder = tmp_path / f"checkpoint-{step}"
        folder.mkdir()
        (folder / "adapter_model.safetensors").write_bytes(b"x")
        if state != "weights":
            (folder / "trainer_state.json").write_text(f'{{"global_step": {step}}}')
        if state == "marked":
            mark_complete(folder, step)
    # 15 has every file but was killed before its marker; 20 died mid-write.
    assert last_complete_checkpoint(tmp_path) == str(tmp_path / "checkpoint-10")
    with pytest.raises(ValueError):  # a half-written trainer_state.json is never marked
        (tmp_path / "checkpoint-20" / "trainer_state.json").write_text('{"glob')
        mark_complete(tmp_path / "checkpoint-20", 20)


def test_max_length_fits_the_data():
    from ftagent.tools.config.train_config import MAX_LENGTH_CAP, fit_max_length

    assert fit_max_length(183) == 192 and fit_max_length(20) == 128
    assert fit_max_length(10_000) == MAX_LENGTH_CAP
    assert make(longest_example=600).max_length == 640


def test_planned_config_explains_its_values_and_still_round_trips(tmp_path):
    from ftagent.tools.config.train_config import config_from_plan
    from ftagent.tools.config.why import config_rationale
    from ftagent.tools.data.facts import DataFacts
    from ftagent.tools.hardware import Hardware
    from ftagent.tools.plan.rules import make_plan
    from ftagent.tools.plan.types import PlanInputs
    from ftagent.tools.registry import lookup

    hw = Hardware(cpu_cores=2, ram_gb=24, ram_available_gb=20, disk_free_gb=50)
    data = DataFacts(n_examples=250, kind="classification", n_labels=10, tokens_p50=90,
                     tokens_p99=130, tokens_max=170)
    card = lookup("smollm2-135m-instruct")
    plan = make_plan(PlanInputs(goal="route intents", data=data, hardware=hw, model=card))
    plan_dict = plan.model_dump() | {"model_path": "m", "params": card.params}
    cfg = config_from_plan(plan_dict, "t.jsonl", None, "o", n_train=200)
    assert (cfg.num_epochs, cfg.learning_rate, cfg.lora.r, cfg.lora.alpha) == (3.0, 1e-3, 8, 16)
    assert cfg.evaluation.primary_metric == "accuracy" and cfg.evaluation.min_gain == 0.10
    why = config_rationale(cfg, plan_dict, 200)
    text = dump_yaml(cfg, "h", why)
    assert "# chosen: 200 training examples: 3 epochs under 500" in text
    assert "  # chosen: 8: 8 under 500 examples" in text  # nested fields too
    path = tmp_path / "c.yaml"
    path.write_text(text)
    assert load_config(path) == cfg
