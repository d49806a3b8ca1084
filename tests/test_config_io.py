"""Import/export of LLaMA-Factory, Axolotl and OpenAI job configs: real example files,
explicit round trips, and the errors a person sees."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml
from ftagent.tools.config.axolotl import from_axolotl, to_axolotl
from ftagent.tools.config.imported import PLACEHOLDER, ConfigImportError
from ftagent.tools.config.llamafactory import (
    from_llamafactory,
    llamafactory_dataset_info,
    to_llamafactory,
)
from ftagent.tools.config.openai_jobs import from_openai_job
from ftagent.tools.config.train_config import TrainConfig
from ftagent.tools.config.translate import detect_format, load_foreign

ASSETS = Path(__file__).parent / "assets" / "foreign"
CHAT = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "hello"}]}


def _data(tmp_path: Path) -> tuple[str, str]:
    for name in ("train.jsonl", "val.jsonl"):
        (tmp_path / name).write_text(json.dumps(CHAT) + "\n", encoding="utf-8")
    return str(tmp_path / "train.jsonl"), str(tmp_path / "val.jsonl")


def _configs(tmp_path: Path) -> list[TrainConfig]:
    """Explicit configs that differ from the defaults on every field both formats have."""
    train, val = _data(tmp_path)
    common = {"train_file": train, "output_dir": str(tmp_path / "out")}
    return [
        TrainConfig(
            model="meta-llama/Llama-3.2-1B", method="qlora", val_file=val, **common,
            lora={"r": 64, "alpha": 128, "dropout": 0.1, "target_modules": "all-linear",
                  "use_dora": True},
            quantization={"quant_type": "fp4", "double_quant": False},
            learning_rate=1.5e-4, num_epochs=2.5, max_steps=300, batch_size=2, grad_accum=16,
            max_length=4096, packing=True, warmup_ratio=0.1, lr_scheduler="linear",
            weight_decay=0.01, completion_only_loss=False, save_steps=50, eval_steps=25,
            seed=7, bf16=True, gradient_checkpointing=True, max_grad_norm=0.3,
        ),
        TrainConfig(
            model="Qwen/Qwen2.5-0.5B-Instruct", method="lora", **common,
            lora={"r": 8, "alpha": 8, "dropout": 0.0, "target_modules": ["q_proj", "v_proj"],
                  "use_rslora": True},
            learning_rate=3e-4, num_epochs=1, batch_size=4, max_length=1024, bf16=False,
            lr_scheduler="constant_with_warmup", gradient_checkpointing=False,
        ),
        TrainConfig(model="./local-model", method="full", **common, learning_rate=2e-5),
    ]


def _comparable(cfg: TrainConfig, drop: set[str]) -> dict:
    data = cfg.model_dump(exclude={"evaluation", "deployment", *drop})
    if cfg.method == "full":
        data.pop("lora")
    if cfg.method != "qlora":
        data.pop("quantization", None)
    return data


def _through_yaml(data: dict) -> dict:
    return yaml.safe_load(yaml.safe_dump(data, sort_keys=False))


def test_llamafactory_round_trip(tmp_path):
    for cfg in _configs(tmp_path):
        back = from_llamafactory(_through_yaml(to_llamafactory(cfg)), str(tmp_path / "x.yaml"))
        assert back.ignored == []
        drop = {"early_stopping_patience"}  # LLaMA-Factory has no early stopping
        got, want = _comparable(back.config, drop), _comparable(cfg, drop)
        if cfg.method == "qlora":  # compute dtype follows bf16/fp16 there
            got["quantization"].pop("compute_dtype"), want["quantization"].pop("compute_dtype")
        assert got == want


def test_axolotl_round_trip(tmp_path):
    for cfg in _configs(tmp_path):
        cfg = cfg.model_copy(update={"early_stopping_patience": 3})
        back = from_axolotl(_through_yaml(to_axolotl(cfg)), str(tmp_path / "x.yml"))
        assert _comparable(back.config, set()) == _comparable(cfg, set())
        assert back.ignored == ["optimizer"]  # ftagent always uses AdamW


def test_axolotl_round_trip_keeps_compute_dtype(tmp_path):
    cfg = _configs(tmp_path)[0]
    cfg = cfg.model_copy(update={"quantization": cfg.quantization.model_copy(
        update={"compute_dtype": "float16"})})
    back = from_axolotl(to_axolotl(cfg), "x.yml")
    assert back.config.quantization.compute_dtype == "float16"


def test_export_uses_hub_id_for_ftagent_alias(tmp_path):
    cfg = TrainConfig(model="smollm2-135m-instruct", train_file="t.jsonl", output_dir="o")
    assert to_llamafactory(cfg)["model_name_or_path"] == "HuggingFaceTB/SmolLM2-135M-Instruct"
    assert to_axolotl(cfg)["base_model"] == "HuggingFaceTB/SmolLM2-135M-Instruct"


def test_llamafactory_example_lora():
    got = load_foreign(ASSETS / "llamafactory_lora_sft.yaml")
    cfg = got.config
    assert got.format == "llamafactory"
    assert (cfg.method, cfg.model) == ("lora", "meta-llama/Meta-Llama-3-8B-Instruct")
    assert cfg.lora.target_modules == "all-linear"
    # LLaMA-Factory's own defaults for what the file leaves out
    assert (cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == (8, 16, 0.0)
    assert cfg.gradient_checkpointing is True
    assert (cfg.batch_size, cfg.grad_accum, cfg.max_length) == (1, 8, 2048)
    assert (cfg.learning_rate, cfg.warmup_ratio, cfg.bf16) == (1e-4, 0.1, True)
    assert cfg.train_file == PLACEHOLDER
    assert any("identity" in n and "not a local file" in n for n in got.notes)
    assert {"template", "ddp_timeout", "plot_loss"} <= set(got.ignored)


def test_llamafactory_example_qlora():
    got = load_foreign(ASSETS / "llamafactory_qlora_sft.yaml")
    assert got.config.method == "qlora"
    assert got.config.lora.target_modules == ["q_proj", "v_proj"]
    assert got.config.eval_steps == 500
    assert any(n.startswith("val_size") for n in got.notes)


def test_llamafactory_refuses_dpo_with_clear_message():
    with pytest.raises(ConfigImportError, match="stage 'dpo'.*only SFT"):
        load_foreign(ASSETS / "llamafactory_lora_dpo.yaml")


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"finetuning_type": "freeze"}, "finetuning_type 'freeze'"),
        ({"quantization_bit": 8}, "quantization_bit 8"),
        ({"stage": "kto"}, "KTO"),
    ],
)
def test_llamafactory_untranslatable(change, match):
    data = {"model_name_or_path": "m", "stage": "sft", "dataset": "d"} | change
    with pytest.raises(ConfigImportError, match=match):
        from_llamafactory(data, "cfg.yaml")


def test_llamafactory_dataset_file_and_train_on_prompt(tmp_path):
    train, _ = _data(tmp_path)
    data = {"model_name_or_path": "m", "dataset": train, "train_on_prompt": True,
            "disable_gradient_checkpointing": True, "lora_target": "q_proj, k_proj"}
    cfg = from_llamafactory(data, str(tmp_path / "c.yaml")).config
    assert cfg.train_file == train
    assert cfg.completion_only_loss is False and cfg.gradient_checkpointing is False
    assert cfg.lora.target_modules == ["q_proj", "k_proj"]


def test_llamafactory_dataset_info_resolves_names(tmp_path):
    """The dataset_info.json entry export prints lets import find the file again."""
    train, _ = _data(tmp_path)
    (tmp_path / "my_chats.jsonl").write_text(Path(train).read_text())
    cfg = TrainConfig(model="m", train_file=str(tmp_path / "my_chats.jsonl"), output_dir="o")
    info = llamafactory_dataset_info(cfg)
    info["support"] = info.pop("my_chats")  # a name unlike the file's
    (tmp_path / "dataset_info.json").write_text(json.dumps(info))
    data = {"model_name_or_path": "m", "dataset": "support", "dataset_dir": str(tmp_path)}
    assert from_llamafactory(data, "c.yaml").config.train_file == str(tmp_path / "my_chats.jsonl")


def test_axolotl_example_lora():
    got = load_foreign(ASSETS / "axolotl_lora_1b.yml")
    cfg = got.config
    assert got.format == "axolotl"
    assert (cfg.method, cfg.lora.r, cfg.lora.alpha, cfg.lora.dropout) == ("lora", 16, 32, 0.05)
    assert set(cfg.lora.target_modules) == {
        "q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
    assert (cfg.batch_size, cfg.grad_accum, cfg.max_length, cfg.packing) == (2, 2, 2048, True)
    assert cfg.gradient_checkpointing is True and cfg.bf16 == "auto"
    notes = " ".join(got.notes)
    assert "warmup_steps" in notes and "val_set_size" in notes and "teknium" in notes
    # null keys (wandb_project:) are unset, not ignored settings
    assert "optimizer" in got.ignored and "wandb_project" not in got.ignored


def test_axolotl_example_qlora():
    cfg = load_foreign(ASSETS / "axolotl_qlora.yml").config
    assert cfg.method == "qlora" and cfg.lora.target_modules == "all-linear"
    assert (cfg.lora.r, cfg.lora.alpha, cfg.num_epochs, cfg.max_length) == (32, 16, 4.0, 4096)


def test_axolotl_local_dataset_and_full(tmp_path):
    train, val = _data(tmp_path)
    data = {"base_model": "m", "datasets": [{"path": train, "type": "alpaca"}],
            "test_datasets": [{"path": val, "type": "chat_template"}], "train_on_inputs": True}
    got = from_axolotl(data, str(tmp_path / "c.yml"))
    assert got.config.method == "full"  # no adapter: full fine-tuning in Axolotl
    assert (got.config.train_file, got.config.val_file) == (train, val)
    assert got.config.completion_only_loss is False
    assert any("type 'alpaca'" in n and "ftagent data prepare" in n for n in got.notes)


def test_axolotl_8bit_refused():
    with pytest.raises(ConfigImportError, match="load_in_8bit"):
        from_axolotl({"base_model": "m", "adapter": "lora", "load_in_8bit": True}, "c.yml")


def _job(train: Path, **extra) -> dict:
    return {"model": "gpt-4o-mini-2024-07-18", "training_file": str(train), **extra}


def test_openai_example_job(tmp_path):
    got = load_foreign(ASSETS / "openai_job.json", data_out=tmp_path / "data")
    cfg = got.config
    assert got.format == "openai"
    assert (cfg.model, cfg.method) == ("smollm2-135m-instruct", "lora")
    assert cfg.learning_rate == pytest.approx(2e-4 * 1.8)
    assert (cfg.num_epochs, cfg.batch_size, cfg.grad_accum, cfg.seed) == (2, 8, 2, 7)
    assert cfg.train_file == str(tmp_path / "data" / "train.jsonl")
    assert cfg.val_file == str(tmp_path / "data" / "val.jsonl")
    assert cfg.output_dir.endswith("output-marv")
    assert any("2e-4 x multiplier 1.8" in n for n in got.notes)
    assert any("weight 0" in n for n in got.notes)
    rows = [json.loads(x) for x in Path(cfg.train_file).read_text().splitlines()]
    assert len(rows) == 3
    assert all("weight" not in m for r in rows for m in r["messages"])  # copy is cleaned
    assert "weight" in (ASSETS / "openai_chat.jsonl").read_text()  # the source is untouched


def test_openai_legacy_hyperparameters_and_auto(tmp_path):
    train, _ = _data(tmp_path)
    job = _job(Path(train), hyperparameters={"n_epochs": "auto", "batch_size": 12,
                                             "learning_rate_multiplier": "auto"})
    got = from_openai_job(job, str(tmp_path / "job.json"), tmp_path / "d", model="m")
    cfg = got.config
    assert cfg.model == "m"
    assert (cfg.batch_size, cfg.grad_accum) == (6, 2)
    assert cfg.num_epochs == 3  # ftagent's default for a handful of examples
    assert any("auto" in n for n in got.notes)


@pytest.mark.parametrize(
    ("line", "match"),
    [
        ('{"messages": [{"role": "user", "content": "hi"}]}', r":2: messages: no assistant"),
        ('{"messages": [{"role": "bot", "content": "x"}]}', r":2: messages\[0\]\.role"),
        ('{"messages": [{"role": "assistant", "content": "x", "weight": 2}]}',
         r":2: messages\[0\]\.weight"),
        ("{not json", r":2: not valid JSON"),
        ('{"prompt": "x"}', r":2: messages"),
    ],
)
def test_openai_bad_rows_name_file_line_field(tmp_path, line, match):
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps(CHAT) + "\n" + line + "\n")
    with pytest.raises(ConfigImportError, match=match) as exc:
        from_openai_job(_job(train), "job.json", tmp_path / "d")
    assert str(train) in str(exc.value)
    assert not (tmp_path / "d" / "train.jsonl").exists()


def test_openai_tool_messages_and_trailing_turns(tmp_path):
    row = {"messages": [
        {"role": "user", "content": "weather?"},
        {"role": "assistant", "content": "Sunny.", "weight": 1},
        {"role": "tool", "content": "{}", "tool_call_id": "1"},
        {"role": "user", "content": "thanks"},
    ]}
    train = tmp_path / "t.jsonl"
    train.write_text(json.dumps(row) + "\n")
    got = from_openai_job(_job(train), "job.json", tmp_path / "d")
    copied = json.loads(Path(got.config.train_file).read_text())
    assert copied["messages"][-1] == {"role": "assistant", "content": "Sunny."}
    assert any("tool/function" in n for n in got.notes)


def test_openai_refuses_dpo_and_file_ids(tmp_path):
    train, _ = _data(tmp_path)
    with pytest.raises(ConfigImportError, match="only supervised"):
        from_openai_job(_job(Path(train), method={"type": "dpo"}), "j.json", tmp_path)
    with pytest.raises(ConfigImportError, match="OpenAI file id"):
        from_openai_job({"model": "gpt-4o-mini", "training_file": "file-abc123"}, "j", tmp_path)


def test_detect_format():
    assert detect_format({"model_name_or_path": "m"}) == "llamafactory"
    assert detect_format({"base_model": "m"}) == "axolotl"
    assert detect_format({"model": "gpt-4o-mini", "training_file": "t"}) == "openai"
    with pytest.raises(ConfigImportError, match="already an ftagent config"):
        detect_format({"model": "m", "train_file": "t", "output_dir": "o"})
    with pytest.raises(ConfigImportError, match="not recognised"):
        detect_format({"foo": 1})
