"""DPO on real preference pairs (Anthropic HH, as data_prep writes them) with a tiny
random model: the recipe runs, logs DPO's rewards and saves an adapter."""

import json
import subprocess
import sys
from pathlib import Path

HH_PAIRS = Path(__file__).resolve().parent / "assets" / "hh_rlhf_harmless_base"  # 80 rows
ROOT = Path(__file__).resolve().parents[1]


def test_dpo_trains_an_adapter_with_the_base_as_reference(tmp_path, tiny_model):
    from ftagent.tools.config.train_config import apply_overrides, default_config, save_config
    from ftagent.tools.data import PrepareOptions, prepare_dataset

    rows = (HH_PAIRS / "train.jsonl").read_text(encoding="utf-8").splitlines()[:40]
    src = tmp_path / "pairs.jsonl"
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    prepared = prepare_dataset(src, tmp_path / "data",
                               PrepareOptions(model=str(tiny_model), near_dup_threshold=None))
    cfg = default_config(str(tiny_model), "lora", prepared.split_paths["train"], None,
                         str(tmp_path / "out"), prepared.splits["train"], 1_000_000, False)
    cfg = apply_overrides(cfg, {"objective": "dpo", "max_steps": 3, "batch_size": 2,
                                "learning_rate": 5e-4, "max_length": 256, "save_steps": 2})
    path = save_config(cfg, tmp_path / "dpo.yaml")
    r = subprocess.run([sys.executable, "-m", "ftagent.tools.train", str(path)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    result = json.loads((tmp_path / "out" / "result.json").read_text())
    assert result["objective"] == "dpo" and result["global_step"] == 3
    assert (tmp_path / "out" / "adapter" / "adapter_model.safetensors").exists()
    logged = [json.loads(x) for x in (tmp_path / "out" / "metrics.jsonl").read_text().split("\n")
              if x]
    first = next(x for x in logged if "loss" in x)
    # Policy and reference are the same model at step 1: DPO's loss is exactly ln 2.
    assert abs(first["loss"] - 0.6931) < 1e-3
    assert any("rewards/margins" in x for x in logged)
