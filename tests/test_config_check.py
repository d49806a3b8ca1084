"""Semantic config checks against a model's config.json (as a dict: no model is loaded)."""

from __future__ import annotations

import json

import pytest
from ftagent.tools.config.check import check_config, registry_model_config
from ftagent.tools.config.train_config import TrainConfig

LLAMA = {
    "architectures": ["LlamaForCausalLM"], "hidden_size": 64, "intermediate_size": 128,
    "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
    "vocab_size": 1000, "max_position_embeddings": 1024, "tie_word_embeddings": True,
}
SMOLLM = registry_model_config("smollm2-135m-instruct")


@pytest.fixture
def train_file(tmp_path):
    path = tmp_path / "train.jsonl"
    path.write_text(json.dumps({"messages": [{"role": "user", "content": "q"},
                                             {"role": "assistant", "content": "a"}]}) + "\n")
    return str(path)


def _cfg(train_file: str, **fields) -> TrainConfig:
    return TrainConfig(model="some/model", train_file=train_file, output_dir="o", **fields)


def _by_field(findings) -> dict[str, str]:
    return {f.field: f.severity for f in findings}


def test_clean_config_has_no_findings(train_file):
    assert check_config(_cfg(train_file), LLAMA) == []


@pytest.mark.parametrize(
    ("method", "lr", "severity"),
    [
        ("lora", 2e-4, None), ("lora", 3e-3, "warning"), ("lora", 2e-5, "warning"),
        ("lora", 5e-2, "error"), ("qlora", 5e-6, "error"), ("full", 5e-5, None),
        ("full", 5e-4, "warning"), ("full", 2e-3, "error"),
    ],
)
def test_learning_rate_ranges(train_file, method, lr, severity):
    findings = _by_field(check_config(_cfg(train_file, method=method, learning_rate=lr), LLAMA))
    assert findings.get("learning_rate") == severity


def test_rank_above_hidden_size_is_an_error(train_file):
    cfg = _cfg(train_file, lora={"r": 128, "alpha": 256})
    finding = next(f for f in check_config(cfg, LLAMA) if f.field == "lora.r")
    assert finding.severity == "error" and "64" in finding.message
    # r that is not a power of two is fine
    assert "lora.r" not in _by_field(check_config(_cfg(train_file, lora={"r": 24, "alpha": 48}),
                                                  LLAMA))


@pytest.mark.parametrize(("r", "alpha", "warned"), [(16, 32, False), (32, 16, False),
                                                    (16, 4, True), (8, 256, True)])
def test_alpha_far_from_rank(train_file, r, alpha, warned):
    cfg = _cfg(train_file, lora={"r": r, "alpha": alpha})
    assert ("lora.alpha" in _by_field(check_config(cfg, LLAMA))) is warned


def test_target_modules_checked_against_architecture(train_file):
    cfg = _cfg(train_file, lora={"target_modules": ["q_proj", "c_attn"]})
    finding = next(f for f in check_config(cfg, LLAMA) if f.field == "lora.target_modules")
    assert finding.severity == "error" and "c_attn" in finding.message
    assert "gate_proj" in finding.action  # names the valid ones
    gpt2 = LLAMA | {"architectures": ["GPT2LMHeadModel"]}
    assert "lora.target_modules" not in _by_field(
        check_config(_cfg(train_file, lora={"target_modules": ["c_attn"]}), gpt2))
    assert check_config(_cfg(train_file, lora={"target_modules": "all-linear"}), LLAMA) == []
    unknown = LLAMA | {"architectures": ["MambaForCausalLM"]}
    assert check_config(cfg, unknown) == []  # unknown architecture: skipped


def test_max_length_beyond_context(train_file):
    finding = check_config(_cfg(train_file, max_length=2048), LLAMA)[0]
    assert (finding.field, finding.severity) == ("max_length", "error")
    assert "1024" in finding.action


def test_registry_card_stands_in_for_missing_model_config(train_file):
    cfg = TrainConfig(model="smollm2-135m-instruct", train_file=train_file, output_dir="o",
                      max_length=10000)
    assert _by_field(check_config(cfg)) == {"max_length": "error"}
    assert SMOLLM["hidden_size"] == 576 and SMOLLM["tie_word_embeddings"] is True


def test_qlora_float32_compute_and_schedule_warnings(train_file):
    cfg = _cfg(train_file, method="qlora", quantization={"compute_dtype": "float32"},
               num_epochs=12, warmup_ratio=0.4)
    assert _by_field(check_config(cfg, LLAMA)) == {
        "quantization.compute_dtype": "warning", "num_epochs": "warning",
        "warmup_ratio": "warning"}


def test_early_stopping_needs_val_file(train_file):
    findings = check_config(_cfg(train_file, early_stopping_patience=2), LLAMA)
    assert _by_field(findings) == {"early_stopping_patience": "error"}
    ok = _cfg(train_file, early_stopping_patience=2, val_file=train_file)
    assert check_config(ok, LLAMA) == []


def test_missing_files_are_errors(tmp_path):
    cfg = _cfg(str(tmp_path / "nope.jsonl"), val_file=str(tmp_path / "nope_val.jsonl"))
    assert _by_field(check_config(cfg, LLAMA)) == {"train_file": "error", "val_file": "error"}


def test_memory_budget_warning_names_estimate_and_fixes(train_file):
    cfg = TrainConfig(model="smollm2-135m-instruct", train_file=train_file, output_dir="o",
                      batch_size=16, max_length=2048)
    finding = next(f for f in check_config(cfg, SMOLLM, memory_budget_gb=4)
                   if f.field == "batch_size")
    assert finding.severity == "warning" and "GB" in finding.message
    assert "grad_accum 2" in finding.action and "gradient_checkpointing" in finding.action
    assert "batch_size" not in _by_field(check_config(cfg, SMOLLM, memory_budget_gb=1000))
    small = cfg.model_copy(update={"batch_size": 1, "max_length": 128})
    assert "batch_size" not in _by_field(check_config(small, SMOLLM, memory_budget_gb=4))


def test_errors_come_first_and_every_finding_says_what_to_do(tmp_path):
    cfg = _cfg(str(tmp_path / "missing.jsonl"), num_epochs=20, learning_rate=1.0)
    findings = check_config(cfg, LLAMA)
    severities = [f.severity for f in findings]
    assert severities == sorted(severities, key=lambda s: s != "error")
    assert all(f.action for f in findings)


def test_a_config_that_does_not_fit_is_fitted_to_memory_keeping_the_batch():
    """Rows that cannot be measured count as max_length long, all loss: 1472 tokens x 8
    needs ~20 GB of a 17 GB budget, and the config node fits it."""
    from ftagent.tools.config.check import _estimate_gb, fit_to_budget
    from ftagent.tools.config.train_config import TrainConfig

    smollm = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
              "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
              "tie_word_embeddings": True}
    cfg = TrainConfig(model="m", train_file="t.jsonl", output_dir="o", batch_size=8,
                      max_length=1472, gradient_checkpointing=False)
    assert _estimate_gb(cfg, smollm, 8, False, "cpu") > 17.3
    fitted, why = fit_to_budget(cfg, smollm, 17.3, "cpu")
    assert fitted.batch_size * fitted.grad_accum == 8  # the same effective batch
    assert _estimate_gb(fitted, smollm, fitted.batch_size, fitted.gradient_checkpointing,
                        "cpu") <= 17.3
    assert why.startswith("fitted to 17.3 GB")
    same, none = fit_to_budget(fitted, smollm, 17.3, "cpu")
    assert same is fitted and none == ""
    # the same run on the measured self_instruct rows needs a few GB: nothing to fit
    from ftagent.tools.data.facts import TokenFacts

    rows = TokenFacts(mean=148.4, longest=1412, loss_mean=63.8, loss_longest=62,
                      shared_prefix=24)
    assert _estimate_gb(cfg, smollm, 8, False, "cpu", rows) < 8
    assert fit_to_budget(cfg, smollm, 17.3, "cpu", rows) == (cfg, "")
