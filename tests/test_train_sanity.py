"""Early sanity checks: the pure diagnosis on logged rows, and a real training run on a
model with a poisoned weight that must stop at once with a diagnosis."""

import json
import math
import shutil
import subprocess
import sys

from ftagent.tools.train.sanity import FLAT_STEPS, diagnose


def rows(*losses, grad=1.0):
    return [{"step": i + 1, "loss": x, "grad_norm": grad} for i, x in enumerate(losses)]


def test_diagnosis_of_logged_rows():
    assert diagnose(rows(2.0, 1.8, 1.5)) is None
    assert diagnose(rows(2.0, math.nan)).kind == "loss_nan"
    assert diagnose(rows(2.0, 1.9, grad=math.inf)).kind == "grad_inf"
    assert diagnose(rows(0.0)).kind == "loss_zero"
    assert diagnose(rows(2.0, grad=0.0)).kind == "grad_zero"
    flat = diagnose(rows(*[1.25] * FLAT_STEPS))
    assert flat.kind == "loss_flat" and "learning_rate" in flat.fix
    assert diagnose(rows(*[1.25] * (FLAT_STEPS - 1))) is None
    late = [{"step": 500, "loss": 0.0, "grad_norm": 1.0}]  # a memorised set late on is fine
    assert diagnose(late) is None


def test_a_run_that_cannot_learn_stops_with_a_diagnosis(tmp_path, tiny_model, small_data):
    from ftagent.tools.config.train_config import apply_overrides, default_config, save_config
    from safetensors.torch import load_file, save_file

    model = tmp_path / "poisoned"
    shutil.copytree(tiny_model, model)
    weights = model / "model.safetensors"
    tensors = load_file(weights)
    name = next(k for k in tensors if "norm" in k)
    tensors[name] = tensors[name] * math.nan  # every forward pass now gives NaN
    save_file(tensors, weights, metadata={"format": "pt"})
    cfg = default_config(str(model), "lora", str(small_data), None, str(tmp_path / "out"),
                         30, 1_000_000, False)
    cfg = apply_overrides(cfg, {"max_steps": 20, "save_steps": 5})
    path = save_config(cfg, tmp_path / "c.yaml")
    r = subprocess.run([sys.executable, "-m", "ftagent.tools.train", str(path)],
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 3, r.stderr[-2000:]
    assert "training stopped early, step 1" in r.stderr and "Fix:" in r.stderr
    logged = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().split("\n")
              if x]
    anomaly = [x for x in logged if x.get("event") == "anomaly"]
    assert anomaly and anomaly[0]["kind"] == "loss_nan"
    assert not (tmp_path / "out" / "result.json").exists()  # not a finished run


def test_ftagent_train_runs_a_config_and_refuses_a_finished_run(tmp_path, tiny_model, small_data):
    from conftest import ftagent
    from ftagent.tools.config.train_config import apply_overrides, default_config, save_config

    cfg = default_config(str(tiny_model), "lora", str(small_data), None, str(tmp_path / "out"),
                         30, 1_000_000, False)
    path = save_config(apply_overrides(cfg, {"max_steps": 3, "save_steps": 2}), tmp_path / "c.yaml")
    r = ftagent("train", str(path))
    assert r.returncode == 0, r.stderr[-2000:]
    assert "done: 3 steps" in r.stdout
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").exists()
    # The demo rows share their system prompt: the run computed it once per micro-batch.
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["effective"]["shared_prefix"] is True
    logs = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().splitlines()]
    saved = [r["tokens_saved_by_sharing"] for r in logs if "tokens_saved_by_sharing" in r]
    assert saved and saved[-1] > 0 and saved == sorted(saved)
    again = ftagent("train", str(path))
    assert again.returncode == 2 and "never overwritten" in again.stderr
    bad = save_config(apply_overrides(cfg, {"train_file": str(tmp_path / "missing.jsonl"),
                                            "output_dir": str(tmp_path / "o2")}),
                      tmp_path / "bad.yaml")
    r = ftagent("train", str(bad))
    assert r.returncode == 2 and "pre-flight" in r.stderr and "missing.jsonl" in r.stderr
