"""Pre-flight: the real environment and the tiny model pass; each broken input fails with
the message and fix a user needs. No library is mocked."""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from ftagent.tools.config.train_config import QuantSettings, TrainConfig
from ftagent.tools.data.facts import TokenFacts
from ftagent.tools.hardware import GPU, Hardware
from ftagent.tools.plan.estimate import shape_from_config
from ftagent.tools.train.capacity_checks import (
    check_disk,
    disk_needed_bytes,
    estimate_run,
    memory_fixes,
)
from ftagent.tools.train.check_result import PreflightReport
from ftagent.tools.train.environment_checks import (
    CONSTRAINTS,
    SUPPORTED,
    check_bf16,
    check_cuda,
    check_qlora,
    check_version,
    qlora_check,
    read_tested_versions,
    version_checks,
)
from ftagent.tools.train.preflight import format_report, preflight

T4 = GPU(name="Tesla T4", memory_gb=15.0, compute_capability="7.5", bf16=False)


def cpu_machine(ram_available_gb: float = 16.0) -> Hardware:
    return Hardware(
        cpu_cores=2, ram_gb=16.0, ram_available_gb=ram_available_gb, disk_free_gb=100.0
    )


def make_config(tmp_path, train_file, **kw) -> TrainConfig:
    base = {
        "model": "unused: model_dir is passed",
        "train_file": str(train_file),
        "output_dir": str(tmp_path / "run"),
        "batch_size": 1,
        "max_length": 128,
    }
    return TrainConfig(**(base | kw))


def copy_model(src, dst):
    shutil.copytree(src, dst)
    return dst


# ---- versions -------------------------------------------------------------------------


def test_real_environment_passes_version_checks():
    checks = version_checks()
    assert {c.name for c in checks} == {f"{p} version" for p in SUPPORTED}
    assert all(c.ok for c in checks), [c.detail for c in checks if not c.ok]


def test_tested_versions_come_from_constraints_txt():
    pinned = dict(re.findall(r"^(trl|peft)==(\S+)$", CONSTRAINTS.read_text(), re.M))
    tested = read_tested_versions()
    assert tested["trl"] == pinned["trl"] and tested["peft"] == pinned["peft"]
    fallback = read_tested_versions(CONSTRAINTS.parent / "no-such-file.txt")
    assert fallback["trl"] == SUPPORTED["trl"][1]


@pytest.mark.parametrize(
    ("package", "installed", "minimum", "tested", "severity", "text"),
    [
        ("trl", "0.9.2", "1.0", "1.16.0", "error", "pip install -c constraints.txt 'trl>=1.0'"),
        ("trl", None, "1.0", "1.16.0", "error", "pip install -c constraints.txt 'trl>=1.0'"),
        ("transformers", "6.0.1", "5.0", "5.23.0", "warning", "pip install 'transformers==5.23.0'"),
        ("peft", "0.22.0", "0.17", "0.21.2", "warning", "newer major"),  # 0.x: minor breaks
        ("torch", "1.13.1", "2.4", "2.13.0", "error", "older than the minimum 2.4"),
    ],
)
def test_version_comparison_fails(package, installed, minimum, tested, severity, text):
    check = check_version(package, installed, minimum, tested)
    assert not check.ok and check.severity == severity
    assert text in check.detail + check.fix


@pytest.mark.parametrize("installed", ["1.0", "1.16.0", "1.99.0", "2.13.0+cpu"])
def test_version_comparison_passes(installed):
    minimum = "2.4" if installed.endswith("+cpu") else "1.0"
    tested = "2.13.0" if installed.endswith("+cpu") else "1.16.0"
    assert check_version("x", installed, minimum, tested).ok


# ---- CUDA and bf16 --------------------------------------------------------------------


def test_bf16_forced_on_a_gpu_without_it_is_an_error():
    check = check_bf16(True, T4, cpu_bf16=False)
    assert not check.ok and check.severity == "error"
    assert "7.5" in check.detail and "bf16: false" in check.fix
    assert check_bf16("auto", T4, cpu_bf16=False).ok
    qlora = check_bf16("auto", T4, cpu_bf16=False, compute_dtype="bfloat16")
    assert not qlora.ok and "compute_dtype" in qlora.detail


def test_bf16_forced_on_a_cpu_without_it_is_a_warning():
    check = check_bf16(True, None, cpu_bf16=False)
    assert not check.ok and check.severity == "warning" and "emulated" in check.detail
    assert check_bf16(True, None, cpu_bf16=True).ok
    assert "float32" in check_bf16("auto", None, cpu_bf16=False).detail


def test_cuda_check_reports_the_gpu_and_flags_a_cpu_torch_beside_a_driver():
    a100 = GPU(name="A100", memory_gb=80.0, compute_capability="8.0", bf16=True)
    assert "compute capability 8.0" in check_cuda(a100, "12.4", "550.54").detail
    cpu_torch = check_cuda(None, None, "550.54")
    assert not cpu_torch.ok and "CPU build" in cpu_torch.detail
    assert check_cuda(None, None, None).ok


# ---- QLoRA backend --------------------------------------------------------------------


@pytest.mark.parametrize("quant_type", ["nf4", "fp4"])
def test_qlora_backend_works_on_this_cpu(quant_type):
    started = time.perf_counter()
    check = qlora_check("cpu", QuantSettings(quant_type=quant_type))
    wall = time.perf_counter() - started
    assert check.ok, check.detail
    seconds = float(re.search(r"([\d.]+) s$", check.detail)[1])
    assert seconds < 2.0  # the round trip itself; the first call also imports bitsandbytes
    assert wall < 10.0


def test_qlora_failure_names_the_fixes():
    check = check_qlora("cuda", None, 0.0, "RuntimeError: no kernel image")
    assert not check.ok and "no kernel image" in check.detail
    assert "bitsandbytes" in check.fix and "method: lora" in check.fix
    assert not check_qlora("cpu", 0.9, 0.01).ok


# ---- the model folder -----------------------------------------------------------------


def test_tiny_model_passes_everything(tiny_model, small_data, tmp_path):
    cfg = make_config(tmp_path, small_data, method="qlora", val_file=str(small_data))
    report = preflight(cfg, model_dir=tiny_model)  # the real hardware probe
    assert report.ok, format_report(report)
    names = {c.name for c in report.checks}
    assert {"memory", "disk", "qlora backend", "chat template", "val_file"} <= names
    assert "ready to train" in format_report(report)
    assert PreflightReport.model_validate_json(report.model_dump_json()).ok


def test_pickled_weights_only_fail_with_the_safetensors_message(tiny_model, small_data, tmp_path):
    import torch
    from safetensors.torch import load_file

    folder = copy_model(tiny_model, tmp_path / "model")
    weights = load_file(folder / "model.safetensors")
    (folder / "model.safetensors").unlink()
    torch.save(weights, folder / "pytorch_model.bin")
    report = preflight(make_config(tmp_path, small_data), cpu_machine(), folder)
    check = report.get("model weights")
    assert not report.ok and not check.ok
    assert "pytorch_model.bin" in check.detail and "safetensors only" in check.detail
    assert "save_pretrained" in check.fix


def test_folder_without_chat_template_fails(tiny_model, small_data, tmp_path):
    folder = copy_model(tiny_model, tmp_path / "model")
    (folder / "chat_template.jinja").unlink(missing_ok=True)
    tok_cfg = folder / "tokenizer_config.json"
    tok_cfg.write_text(json.dumps(json.loads(tok_cfg.read_text()) | {"chat_template": None}))
    report = preflight(make_config(tmp_path, small_data), cpu_machine(), folder)
    check = report.get("chat template")
    assert not report.ok and not check.ok
    assert "instruct model" in check.fix and "chat_template.jinja" in check.fix


def test_folder_without_config_or_tokenizer_fails(tmp_path, small_data):
    folder = tmp_path / "empty"
    folder.mkdir()
    report = preflight(make_config(tmp_path, small_data), cpu_machine(), folder)
    failed = {c.name for c in report.errors}
    assert {"model config", "model weights", "chat template", "tokenizer"} <= failed
    assert report.get("memory") is None  # nothing to estimate from


# ---- memory and disk ------------------------------------------------------------------


def test_too_little_memory_fails_with_the_fixes(tiny_model, small_data, tmp_path):
    cfg = make_config(tmp_path, small_data, batch_size=4)
    report = preflight(cfg, cpu_machine(ram_available_gb=0.5), tiny_model)
    check = report.get("memory")
    assert not report.ok and not check.ok and check.severity == "error"
    assert "budget 0.40 GB" in check.detail
    for lever in ("batch_size:", "grad_accum:", "gradient_checkpointing: true", "method: qlora"):
        assert lever in check.fix
    assert "Even all of these together" in check.fix  # 0.4 GB is below the runtime alone


def test_memory_fix_names_the_largest_batch_that_fits(tiny_model, tmp_path):
    shape = shape_from_config(json.loads((tiny_model / "config.json").read_text()))
    cfg = make_config(tmp_path, "x.jsonl", batch_size=8, grad_accum=1, max_length=512)
    rows = TokenFacts.worst_case(512)
    budget = estimate_run(shape, cfg, rows, "fp32", "cpu", batch=3).total_gb + 0.001
    fixes = memory_fixes(shape, cfg, rows, "fp32", "cpu", budget)
    assert "batch_size: 3 with grad_accum: 3" in fixes
    assert "Even all" not in fixes


def test_memory_is_estimated_on_the_train_file_rows(tiny_model, small_data, tmp_path):
    """Padding-free rows cost their real length: the pre-flight measures the train file
    with the model's tokenizer instead of assuming batch x max_length."""
    from ftagent.tools.data.tokens import train_file_facts

    facts = train_file_facts(small_data, tiny_model)
    assert facts.measured and facts.longest < 256 and facts.shared_prefix >= 16
    cfg = make_config(tmp_path, small_data, batch_size=8, max_length=2048)
    check = preflight(cfg, cpu_machine(), tiny_model).get("memory")
    shape = shape_from_config(json.loads((tiny_model / "config.json").read_text()))
    same = estimate_run(shape, cfg, facts, "fp32", "cpu").total_gb
    worst = estimate_run(shape, cfg, TokenFacts.worst_case(2048), "fp32", "cpu").total_gb
    assert f"estimated peak {same:.2f} GB" in check.detail and same < worst / 4


def test_disk_need_and_shortfall():
    gb = 2**30
    assert disk_needed_bytes(gb, "lora", 1_000_000) == 2 * gb + 3 * 12_000_000
    assert disk_needed_bytes(gb, "full", 0) == 2 * gb + 9 * gb
    check = check_disk(1 * gb, 11 * gb, Path("/data"))
    assert not check.ok and "11.00 GB needed" in check.detail and "10.00 GB" in check.fix
    assert check_disk(12 * gb, 11 * gb, Path("/data")).ok


# ---- data and output_dir --------------------------------------------------------------


def test_finished_output_dir_fails(tiny_model, small_data, tmp_path):
    cfg = make_config(tmp_path, small_data)
    out = tmp_path / "run"
    out.mkdir()
    (out / "checkpoints").mkdir()
    assert preflight(cfg, cpu_machine(), tiny_model).get("output_dir").ok  # resumable
    (out / "result.json").write_text("{}")
    check = preflight(cfg, cpu_machine(), tiny_model).get("output_dir")
    assert not check.ok and "never overwritten" in check.detail
    assert f"{out}-2" in check.fix


def test_missing_train_file_and_empty_val_file_fail(tiny_model, tmp_path):
    empty = tmp_path / "val.jsonl"
    empty.write_text("")
    cfg = make_config(tmp_path, tmp_path / "missing.jsonl", val_file=str(empty))
    report = preflight(cfg, cpu_machine(), tiny_model)
    assert not report.ok
    assert "does not exist" in report.get("train_file").detail
    assert "is empty" in report.get("val_file").detail
    assert "fix: " in format_report(report)


@pytest.mark.parametrize("hw", [
    cpu_machine(),
    cpu_machine(ram_available_gb=3.0).model_copy(update={"cpu_bf16": True}),
    Hardware(cpu_cores=8, ram_gb=64, ram_available_gb=60, disk_free_gb=100, gpus=[T4]),
], ids=["cpu-fp32", "cpu-bf16-small", "t4"])
def test_plan_and_pre_flight_give_one_estimate(bundled_model, small_data, tmp_path, hw):
    """The plan's memory estimate and budget are the pre-flight's, to the digit, for the
    config written from that plan and the same data: one function (`estimate_for`), the
    same settings (`settings_of` the config the plan becomes) and the same token facts."""
    from ftagent.tools.config.train_config import config_from_plan
    from ftagent.tools.plan.planner import data_facts
    from ftagent.tools.plan.rules import make_plan
    from ftagent.tools.plan.types import PlanInputs
    from ftagent.tools.registry import card_from_folder
    from transformers import AutoTokenizer

    facts = data_facts(small_data, AutoTokenizer.from_pretrained(bundled_model.path))
    assert facts.tokens and facts.tokens.measured
    card = card_from_folder(bundled_model.path, bundled_model.name)
    plan = make_plan(PlanInputs(goal="route support messages to one of ten intents",
                                data=facts, hardware=hw, model=card))
    cfg = config_from_plan(plan.model_dump() | {"model_path": str(bundled_model.path)},
                           str(small_data), None, str(tmp_path / "run"), facts.n_examples,
                           longest_example=facts.tokens.longest)
    assert cfg.max_length == plan.training.max_length
    check = preflight(cfg, hw, bundled_model.path).get("memory")
    assert (f"estimated peak {plan.estimated_memory_gb:.2f} GB, budget "
            f"{plan.memory_budget_gb:.2f} GB") in check.detail
    assert check.ok == plan.fits
