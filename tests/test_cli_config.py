"""`ftagent config ...` through typer's CLI runner, plus one fresh process that checks the
sub-app imports nothing heavy."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from ftagent.agent.cli.config import app
from ftagent.tools.config.train_config import TrainConfig, load_config, save_config
from typer.testing import CliRunner

ASSETS = Path(__file__).parent / "assets" / "foreign"
ROOT = Path(__file__).resolve().parent.parent
TINY = {
    "architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 32,
    "intermediate_size": 64, "num_hidden_layers": 2, "num_attention_heads": 4,
    "num_key_value_heads": 2, "vocab_size": 100, "max_position_embeddings": 256,
}
runner = CliRunner()


@pytest.fixture
def model_dir(tmp_path) -> Path:
    """A model folder with only config.json: enough for every check, nothing to load."""
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps(TINY))
    return folder


@pytest.fixture
def config(tmp_path, model_dir) -> Path:
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"messages": [{"role": "user", "content": "q"},
                                              {"role": "assistant", "content": "a"}]}) + "\n")
    cfg = TrainConfig(model=str(model_dir), train_file=str(train), output_dir="o",
                      max_length=128, lora={"r": 8, "alpha": 16})
    return save_config(cfg, tmp_path / "config.yaml")


def _run(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def test_show_yaml_with_comments_and_json(config):
    result = _run("show", config)
    assert result.exit_code == 0
    assert "# LoRA rank" in result.output and "r: 8" in result.output
    data = json.loads(_run("show", config, "--json").output)
    assert data["lora"]["r"] == 8 and data["max_length"] == 128


def test_validate_clean_warning_error_exit_codes(config, tmp_path):
    assert _run("validate", config).exit_code == 0
    cfg = load_config(config)
    warn = save_config(cfg.model_copy(update={"num_epochs": 20}), tmp_path / "warn.yaml")
    result = _run("validate", warn)
    assert result.exit_code == 0 and "num_epochs" in result.output
    assert _run("validate", warn, "--strict").exit_code == 1
    bad = save_config(cfg.model_copy(update={"max_length": 512}), tmp_path / "bad.yaml")
    result = _run("validate", bad, "--json")
    assert result.exit_code == 2
    finding = json.loads(result.output)[0]
    assert finding["field"] == "max_length" and "256" in finding["action"]  # from config.json


def test_validate_pydantic_error_names_file_and_field(config, tmp_path):
    data = yaml.safe_load(config.read_text())
    data["lora"]["r"] = 0
    broken = tmp_path / "broken.yaml"
    broken.write_text(yaml.safe_dump(data))
    result = _run("validate", broken)
    assert result.exit_code == 2
    assert str(broken) in result.output and "lora.r" in result.output


def test_validate_model_not_on_machine_skips_model_checks(config, tmp_path):
    cfg = load_config(config).model_copy(update={"model": "nobody/nothing", "max_length": 9999})
    path = save_config(cfg, tmp_path / "away.yaml")
    result = _run("validate", path)
    assert result.exit_code == 0 and "model checks skipped" in result.output


def test_explain_keys_and_close_matches():
    result = _run("explain", "lora.r")
    assert result.exit_code == 0
    assert "LoRA rank" in result.output and "default: 16" in result.output
    assert ">= 1" in result.output
    assert "allowed: lora, qlora, full" in _run("explain", "method").output
    assert "lora.use_dora" in _run("explain", "lora").output
    result = _run("explain", "lora.rank")
    assert result.exit_code == 2 and "lora.r" in result.output
    assert "lora.r" in _run("explain", "r").output


def test_import_llamafactory_writes_config_and_reports(tmp_path):
    out = tmp_path / "imported.yaml"
    result = _run("import", ASSETS / "llamafactory_lora_sft.yaml", "--out", out)
    assert result.exit_code == 0, result.output
    assert "ignored: template (no ftagent equivalent)" in result.output
    assert "note: dataset 'identity'" in result.output
    cfg = load_config(out)
    assert cfg.model == "meta-llama/Meta-Llama-3-8B-Instruct" and cfg.lora.r == 8
    assert out.read_text().startswith("# imported from")
    # an existing file is kept unless --force
    again = _run("import", ASSETS / "axolotl_qlora.yml", "--out", out)
    assert again.exit_code == 2 and "--force" in again.output
    assert load_config(out).model == cfg.model
    forced = _run("import", ASSETS / "axolotl_qlora.yml", "--out", out, "--force")
    assert forced.exit_code == 0 and load_config(out).method == "qlora"


def test_import_openai_with_model_and_data_out(tmp_path, model_dir):
    out, data = tmp_path / "job.yaml", tmp_path / "jobdata"
    result = _run("import", ASSETS / "openai_job.json", "--out", out, "--from", "openai",
                  "--model", model_dir, "--data-out", data)
    assert result.exit_code == 0, result.output
    cfg = load_config(out)
    assert cfg.model == str(model_dir) and cfg.train_file == str(data / "train.jsonl")
    assert cfg.max_length == 256  # the default capped at the chosen model's context
    assert (data / "val.jsonl").is_file()
    assert _run("validate", out).exit_code == 0
    # the copied data is not overwritten without --force either
    again = _run("import", ASSETS / "openai_job.json", "--out", tmp_path / "other.yaml",
                 "--data-out", data)
    assert again.exit_code == 2 and "train.jsonl exists" in again.output


def test_import_errors(tmp_path):
    result = _run("import", ASSETS / "llamafactory_lora_dpo.yaml", "--out", tmp_path / "x.yaml")
    assert result.exit_code == 2 and "only SFT" in result.output
    assert not (tmp_path / "x.yaml").exists()
    result = _run("import", ASSETS / "axolotl_qlora.yml", "--out", tmp_path / "x.yaml",
                  "--from", "unsloth")
    assert result.exit_code == 2 and "llamafactory" in result.output


def test_export_both_formats_and_import_back(config, tmp_path):
    lf = tmp_path / "lf.yaml"
    result = _run("export", config, "--to", "llamafactory", "--out", lf)
    assert result.exit_code == 0, result.output
    assert '"file_name": "train.jsonl"' in result.output  # the dataset_info.json entry
    assert yaml.safe_load(lf.read_text())["stage"] == "sft"
    ax = tmp_path / "ax.yml"
    assert _run("export", config, "--to", "axolotl", "--out", ax).exit_code == 0
    back = tmp_path / "back.yaml"
    assert _run("import", ax, "--out", back).exit_code == 0
    assert load_config(back).lora == load_config(config).lora
    assert _run("export", config, "--to", "axolotl", "--out", ax).exit_code == 2  # exists
    assert _run("export", config, "--to", "torchtune", "--out", tmp_path / "t").exit_code == 2


def test_cli_imports_nothing_heavy(config, tmp_path):
    """Validate, explain and import in a fresh process, then list heavy modules loaded."""
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from ftagent.agent.cli.config import app\n"
        "r = CliRunner()\n"
        f"codes = [r.invoke(app, ['validate', {str(config)!r}]).exit_code,\n"
        "         r.invoke(app, ['explain', 'lora.r']).exit_code,\n"
        f"         r.invoke(app, ['import', {str(ASSETS / 'axolotl_qlora.yml')!r}, '--out',"
        f" {str(tmp_path / 'fresh.yaml')!r}]).exit_code]\n"
        "heavy = [m for m in ('torch', 'transformers', 'trl', 'peft', 'datasets')"
        " if m in sys.modules]\n"
        "print(codes, heavy)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[0, 0, 0] []"
