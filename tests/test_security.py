"""Trust boundaries: run ids stay inside the runs root, and model weights load from
safetensors only (pickled weights can run code when loaded)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from ftagent.agent.service.runs import RunError, create_run, find_run, find_run_or_folder

BAD_IDS = ["../outside", "..", ".", "a/b", "a/../b", "x..y", "a\\b", "", " run", "run\n"]


def _run_at(folder: Path, run_id: str) -> Path:
    return create_run(folder, run_id, {"goal": "g"})


# ---- run ids ---------------------------------------------------------------------


@pytest.mark.parametrize("run_id", BAD_IDS)
def test_run_ids_with_path_parts_are_refused(tmp_path, run_id):
    root = tmp_path / "runs"
    root.mkdir()
    _run_at(tmp_path / "outside", "outside")  # a real run one `..` away
    with pytest.raises(RunError) as err:
        find_run(run_id, root)
    assert f"run id {run_id!r} is not a run under {root.resolve()}" in str(err.value)
    assert "run ids look like" in str(err.value)


def test_an_absolute_path_is_not_a_run_id(tmp_path):
    root = tmp_path / "runs"
    outside = _run_at(tmp_path / "elsewhere", "abs-1")
    with pytest.raises(RunError, match="is not a run under"):
        find_run(str(outside), root)
    with pytest.raises(RunError, match="is not a run under"):
        find_run("/etc", root)


def test_a_symlink_out_of_the_runs_root_is_refused(tmp_path):
    root = tmp_path / "runs"
    root.mkdir()
    _run_at(tmp_path / "secret", "secret-1")
    (root / "escape").symlink_to(tmp_path / "secret", target_is_directory=True)
    with pytest.raises(RunError, match=r"run id 'escape' is not a run under"):
        find_run("escape", root)
    # A symlink that stays inside the root is an ordinary alias.
    real = _run_at(root / "20261202-153000-ab12", "20261202-153000-ab12")
    (root / "alias").symlink_to(real, target_is_directory=True)
    assert find_run("alias", root) == real


def test_plain_ids_still_resolve_in_the_root_and_from_the_index(tmp_path):
    root = tmp_path / "runs"
    local = _run_at(root / "20261202-153000-ab12", "20261202-153000-ab12")
    assert find_run("20261202-153000-ab12", root) == local
    # A run made with --run-dir elsewhere is found by its id through the index.
    elsewhere = _run_at(tmp_path / "custom-dir", "20261202-160000-cd34")
    assert find_run("20261202-160000-cd34", root) == elsewhere
    with pytest.raises(RunError, match="no run 'nope' found"):
        find_run("nope", root)


def test_the_command_line_may_name_a_run_folder(tmp_path):
    """Only `find_run_or_folder` (used for the person's own command-line arguments) takes a
    folder; a path that holds no run still gets the run-id message."""
    folder = _run_at(tmp_path / "any" / "where", "cli-1")
    assert find_run_or_folder(str(folder), tmp_path / "runs") == folder
    with pytest.raises(RunError, match="is not a run under"):
        find_run_or_folder(str(tmp_path), tmp_path / "runs")


def test_chat_tui_and_cli_callers_refuse_paths(tmp_path):
    from ftagent.agent.chat.tools import ChatContext, resume_run
    from ftagent.agent.cli.main import app
    from ftagent.tui.engine import InputError, find_run_dir
    from typer.testing import CliRunner

    root = tmp_path / "runs"
    _run_at(tmp_path / "outside", "outside")
    ctx = ChatContext(runs_root=root)
    said = resume_run(ctx, "../outside")
    assert "is not a run under" in said and ctx.run_dir is None
    with pytest.raises(InputError, match="is not a run under"):
        find_run_dir("../outside", root)
    r = CliRunner().invoke(app, ["resume", "/etc"])
    assert r.exit_code == 2 and "is not a run under" in r.output


# ---- safetensors only ------------------------------------------------------------


def _pickled_copy(src: Path, dst: Path, name: str, safetensors_name: str) -> Path:
    """`src` with its safetensors weights replaced by a torch pickle of the same tensors."""
    import torch
    from safetensors.torch import load_file

    shutil.copytree(src, dst)
    torch.save(load_file(dst / safetensors_name), dst / name)
    (dst / safetensors_name).unlink()
    return dst


@pytest.fixture
def pickled_model(tiny_model, tmp_path) -> Path:
    return _pickled_copy(tiny_model, tmp_path / "pickled", "pytorch_model.bin",
                         "model.safetensors")


@pytest.fixture
def tiny_adapter(tiny_model, tmp_path) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_model, use_safetensors=True)
    model = get_peft_model(base, LoraConfig(r=2, target_modules=["q_proj"]))
    model.save_pretrained(tmp_path / "adapter")
    AutoTokenizer.from_pretrained(tiny_model).save_pretrained(tmp_path / "adapter")  # as trained
    return tmp_path / "adapter"


def test_evaluation_refuses_a_pickled_model_and_loads_safetensors(tiny_model, pickled_model,
                                                                   tmp_path):
    from ftagent.tools.evaluate.compare import UnsafeWeightsError, evaluate, load_plain

    assert (pickled_model / "pytorch_model.bin").is_file()
    assert not list(pickled_model.glob("*.safetensors"))
    with pytest.raises(UnsafeWeightsError) as err:
        load_plain(pickled_model)
    message = str(err.value)
    assert "pytorch_model.bin" in message and "safetensors" in message
    assert "can run code" in message
    test = tmp_path / "test.jsonl"
    test.write_text(json.dumps({"messages": [{"role": "user", "content": "hi"},
                                             {"role": "assistant", "content": "hello"}]})
                    + "\n", encoding="utf-8")
    with pytest.raises(UnsafeWeightsError, match="pytorch_model.bin"):
        evaluate(pickled_model, tiny_model, test, tmp_path / "eval")
    assert not (tmp_path / "eval" / "report.json").exists()

    model, tokenizer = load_plain(tiny_model)  # the safetensors folder loads
    assert model.config.num_hidden_layers == 2 and tokenizer.pad_token is not None


def test_a_pickled_adapter_is_refused(tiny_model, tiny_adapter, tmp_path):
    from ftagent.tools.deploy.merge import merge_model
    from ftagent.tools.evaluate.compare import UnsafeWeightsError, load_tuned
    from ftagent.tools.serve.app import load_for_serving

    model, _ = load_tuned(tiny_model, tiny_adapter)  # safetensors: loads
    assert hasattr(model, "disable_adapter")
    pickled = _pickled_copy(tiny_adapter, tmp_path / "pickled_adapter", "adapter_model.bin",
                            "adapter_model.safetensors")
    for load in (lambda: load_tuned(tiny_model, pickled),
                 lambda: merge_model(tiny_model, pickled, tmp_path / "merged"),
                 lambda: load_for_serving(tiny_model, pickled)):
        with pytest.raises(UnsafeWeightsError, match="adapter_model.bin"):
            load()
    assert not (tmp_path / "merged").exists()
