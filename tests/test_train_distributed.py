"""Training under `accelerate launch`: the pure command and config builders, the CLI's
--print-command, and a real 2-process DDP run on the CPU (gloo) where only rank 0 writes."""

import json

import pytest
from ftagent.tools.train import launch as tl


def test_launch_command_starts_n_processes_the_way_accelerate_needs():
    cpu = tl.launch_command("c.yaml", 2, backend="cpu", cpu_threads=3)
    assert cpu[1:3] == ["-m", "accelerate.commands.launch"]
    assert cpu[-3:] == ["-m", "ftagent.tools.train", "c.yaml"]
    # --cpu would start one process; --multi_gpu is what makes torchrun start N.
    assert cpu[3] == "--multi_gpu" and "--cpu" not in cpu
    assert tl.launch_command("c.yaml", 1, backend="cpu")[3] == "--cpu"
    gpu = tl.launch_command("c.yaml", 4, backend="cuda", extra_config_file="a.yaml")
    assert gpu[3:5] == ["--config_file", "a.yaml"] and "--multi_gpu" not in gpu
    assert "--mixed_precision" not in gpu  # the config file's precision stands
    assert "--num_cpu_threads_per_process" not in gpu
    flags = dict(zip(cpu[4:-3:2], cpu[5:-3:2], strict=True))
    assert flags["--num_processes"] == "2" and flags["--num_cpu_threads_per_process"] == "3"
    assert flags["--main_process_port"] == "0" and flags["--mixed_precision"] == "no"
    with pytest.raises(ValueError):
        tl.launch_command("c.yaml", 0, backend="cpu")


def test_distributed_configs_for_ddp_fsdp2_and_zero3(tmp_path):
    from accelerate.commands.config.config_args import ClusterConfig
    from accelerate.commands.launch import _validate_launch_command, launch_command_parser

    ddp = tl.distributed_config("ddp", 4, "bf16")
    assert ddp["distributed_type"] == "MULTI_GPU" and ddp["num_processes"] == 4
    assert ddp["mixed_precision"] == "bf16" and "fsdp_config" not in ddp
    fsdp = tl.distributed_config("fsdp", 8, "fp32", "LlamaForCausalLM", offload=True)
    f = fsdp["fsdp_config"]
    assert fsdp["distributed_type"] == "FSDP" and fsdp["mixed_precision"] == "no"
    assert f["fsdp_version"] == 2 and f["fsdp_reshard_after_forward"] is True
    assert f["fsdp_auto_wrap_policy"] == "TRANSFORMER_BASED_WRAP"
    assert f["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    assert f["fsdp_offload_params"] is True
    unknown = tl.distributed_config("fsdp", 2, architecture="SomethingNew")["fsdp_config"]
    assert "fsdp_transformer_layer_cls_to_wrap" not in unknown  # accelerate's own default
    ds = tl.distributed_config("deepspeed", 2)["deepspeed_config"]
    assert ds["zero_stage"] == 3 and ds["offload_param_device"] == "none"
    assert "gradient_accumulation_steps" not in ds  # "auto": the Trainer's
    with pytest.raises(ValueError):
        tl.distributed_config("tp", 2)
    assert tl.from_plan({"strategy": "single", "n_devices": 1}) is None
    assert tl.from_plan({"strategy": "fsdp", "n_devices": 2, "precision": "bf16"},
                        "Qwen2ForCausalLM")["fsdp_config"][
        "fsdp_transformer_layer_cls_to_wrap"] == "Qwen2DecoderLayer"
    # What accelerate itself reads from the written files.
    for name, cfg, kind in (("ddp", ddp, "multi_gpu"), ("fsdp", fsdp, "use_fsdp"),
                            ("ds", tl.distributed_config("deepspeed", 2), "use_deepspeed")):
        path = tl.write_accelerate_config(cfg, tmp_path / f"{name}.yaml")
        assert ClusterConfig.from_yaml_file(path).num_processes == cfg["num_processes"]
        cmd = tl.launch_command("c.yaml", cfg["num_processes"], "cuda", extra_config_file=path)
        args, _, _ = _validate_launch_command(launch_command_parser().parse_args(cmd[3:]))
        assert getattr(args, kind) and args.num_processes == cfg["num_processes"]
    assert args.zero_stage == 3


def test_layer_class_matches_what_transformers_keeps_whole():
    import transformers

    for arch in ("LlamaForCausalLM", "Qwen2ForCausalLM", "MistralForCausalLM",
                 "Gemma2ForCausalLM", "Phi3ForCausalLM", "GPT2LMHeadModel",
                 "GPTNeoXForCausalLM"):
        assert tl.layer_class(arch) in getattr(transformers, arch)._no_split_modules, arch
    assert tl.layer_class(None) is None and tl.layer_class("BertModel") is None


def _config(tmp_path, tiny_model, small_data, out="out"):
    from ftagent.tools.config.train_config import apply_overrides, default_config, save_config

    cfg = default_config(str(tiny_model), "lora", str(small_data), None, str(tmp_path / out),
                         30, 1_000_000, False)
    cfg = apply_overrides(cfg, {"max_steps": 4, "save_steps": 2, "batch_size": 2})
    return save_config(cfg, tmp_path / f"{out}.yaml")


def test_print_command_writes_the_gpu_config(tmp_path, tiny_model, small_data, monkeypatch):
    from ftagent.agent.cli.main import app
    from typer.testing import CliRunner

    path = _config(tmp_path, tiny_model, small_data)
    runner = CliRunner()
    cpu = runner.invoke(app, ["train", str(path), "--num-processes", "2", "--print-command"])
    assert cpu.exit_code == 0, cpu.output
    assert "--multi_gpu --num_processes 2" in cpu.output and "accelerate config" not in cpu.output
    monkeypatch.setattr(tl, "cuda_devices", lambda: 4)
    gpu = runner.invoke(app, ["train", str(path), "--launch", "accelerate", "--strategy",
                              "fsdp", "--print-command"])
    assert gpu.exit_code == 0, gpu.output
    written = tmp_path / "out" / tl.CONFIG_FILE
    assert f"--config_file {written}" in gpu.output and f"accelerate config: {written}" in \
        gpu.output
    import yaml

    fsdp = yaml.safe_load(written.read_text())
    assert fsdp["num_processes"] == 4  # every GPU when --num-processes is not given
    assert fsdp["fsdp_config"]["fsdp_transformer_layer_cls_to_wrap"] == "LlamaDecoderLayer"
    assert not (tmp_path / "out" / "metrics.jsonl").exists()  # nothing trained
    too_many = runner.invoke(app, ["train", str(path), "--num-processes", "8"])
    assert too_many.exit_code == 2 and "4 GPU" in too_many.output
    none = runner.invoke(app, ["train", str(path), "--launch", "none", "--num-processes", "2"])
    assert none.exit_code == 2


@pytest.mark.timeout(300)
def test_two_cpu_processes_train_and_only_rank_zero_writes(tmp_path, tiny_model, small_data):
    from ftagent.tools.train.jobs import run_training_job

    path = _config(tmp_path, tiny_model, small_data)
    out = tmp_path / "out"
    seen: list[dict] = []
    result = run_training_job(path, out, on_metrics=seen.append, poll_s=0.2, num_processes=2)
    assert result["world_size"] == 2 and result["global_step"] == 4
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    assert rows == seen  # followed live, each row once
    assert [r["event"] for r in rows].count("begin") == 1
    steps = [r["step"] for r in rows if "loss" in r]
    assert steps == [1, 2, 3, 4]  # one row per step, not one per rank
    # Each optimizer step took 2 ranks x 2 rows of the 30: 8 steps per epoch, not 15.
    assert rows[1]["epoch"] == pytest.approx(1 / 8)
    assert not [r for r in rows if r.get("event") in ("anomaly", "warning")]
    assert json.loads((out / "result.json").read_text()) == result
    assert [p.name for p in out.glob("adapter*")] == ["adapter"]
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert sorted(p.name for p in (out / "checkpoints").glob("checkpoint-*")) == [
        "checkpoint-2", "checkpoint-4"]
    assert all((p / "COMPLETE").exists() for p in (out / "checkpoints").glob("checkpoint-*"))
    # Both ranks ran the recipe to its end: rank 0 printed the result, rank 1 its empty one.
    # Both ranks write to train.log, so rank 1's "{}" and its newline may be split by rank
    # 0's progress bar: look for the text, not for a line of its own.
    text = (out / "train.log").read_text()
    log = text.splitlines()
    assert "{}" in text
    printed = [json.loads(x) for x in log if x.startswith('{"method"')]
    assert len(printed) == 1 and printed[0]["world_size"] == 2


@pytest.mark.timeout(300)
def test_a_diagnosis_under_two_processes_is_written_once(tmp_path, tiny_model, small_data):
    import math
    import shutil

    from ftagent.tools.config.train_config import load_config, save_config
    from ftagent.tools.train.jobs import TrainingFailed, run_training_job
    from safetensors.torch import load_file, save_file

    model = tmp_path / "poisoned"
    shutil.copytree(tiny_model, model)
    tensors = load_file(model / "model.safetensors")
    name = next(k for k in tensors if "norm" in k)
    tensors[name] = tensors[name] * math.nan  # NaN loss at step 1, on every rank
    save_file(tensors, model / "model.safetensors", metadata={"format": "pt"})
    cfg = load_config(_config(tmp_path, tiny_model, small_data)).model_copy(
        update={"model": str(model)})
    path = save_config(cfg, tmp_path / "poisoned.yaml")
    with pytest.raises(TrainingFailed, match="training stopped early"):
        run_training_job(path, cfg.output_dir, poll_s=0.2, num_processes=2)
    rows = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    assert [r["kind"] for r in rows if r.get("event") == "anomaly"] == ["loss_nan"]
    assert not (tmp_path / "out" / "result.json").exists()
