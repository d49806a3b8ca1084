"""Kill -9 and resume: a real `python -m ftagent.tools.train` run killed after a checkpoint resumes
from it and ends where an uninterrupted run ends (same data order, lr schedule and losses);
a resume with a changed adapter or changed data is refused and leaves the output dir
alone."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DEMO_DATA

ROOT = Path(__file__).resolve().parents[1]
MAX_STEPS, SAVE_STEPS = 24, 4


def run_train(config: Path, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ftagent.tools.train", str(config)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def config_for(model: Path, data: Path, out: Path, path: Path, **overrides) -> Path:
    from ftagent.tools.config.train_config import apply_overrides, default_config, save_config

    cfg = default_config(str(model), "lora", str(data), None, str(out), 30, 1_000_000, False)
    # lora.dropout on (0.05): a resume must also restore the RNG state.
    cfg = apply_overrides(cfg, {"lora.dropout": 0.05, "max_steps": MAX_STEPS,
                                "save_steps": SAVE_STEPS,
                                "batch_size": 2, "seed": 7, "report_to": [], **overrides})
    return save_config(cfg, path)


def logged(out: Path) -> list[dict]:
    from ftagent.tools.train.metrics import read_metrics

    return read_metrics(out)


def last_session(rows: list[dict]) -> list[dict]:
    """The rows written since the last `begin` event (the resumed process's own)."""
    begins = [i for i, r in enumerate(rows) if r.get("event") == "begin"]
    return rows[begins[-1]:]


def per_step(rows: list[dict]) -> dict[int, dict]:
    return {r["step"]: r for r in rows if "loss" in r}


def snapshot(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


@pytest.fixture(scope="module")
def killed_run(tiny_model, tmp_path_factory):
    """A run killed with SIGKILL once a complete checkpoint exists and training has gone
    past it: (model, output dir, data file, checkpoint step)."""
    from ftagent.tools.train.recipe import last_complete_checkpoint

    base = tmp_path_factory.mktemp("killed")
    data = base / "small.jsonl"
    data.write_text("\n".join(DEMO_DATA.read_text(encoding="utf-8").splitlines()[::8]) + "\n",
                    encoding="utf-8")
    out = base / "out"
    config = config_for(tiny_model, data, out, base / "c.yaml")
    proc = subprocess.Popen([sys.executable, "-m", "ftagent.tools.train", str(config)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    ckpt, deadline = None, time.time() + 300
    try:
        while proc.poll() is None and time.time() < deadline:
            ckpt = last_complete_checkpoint(out / "checkpoints")
            if ckpt:
                step = int(Path(ckpt).name.removeprefix("checkpoint-"))
                if any(s > step for s in per_step(logged(out))):
                    os.kill(proc.pid, signal.SIGKILL)
                    break
            time.sleep(0.005)
    finally:
        if proc.poll() is None:
            proc.kill()  # SIGKILL; a no-op for the process just killed above
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, (
        f"training ended (rc {proc.returncode}) before it could be killed past a checkpoint")
    assert not (out / "result.json").exists()
    done = max(per_step(logged(out)))
    assert step < done < MAX_STEPS
    return tiny_model, out, data, step


def copy_of(killed_run, dest: Path, **overrides) -> tuple[Path, Path]:
    """The killed run's output dir copied to `dest`, with a config pointing at the copy."""
    model, out, data, _ = killed_run
    shutil.copytree(out, dest / "out")
    return config_for(model, data, dest / "out", dest / "c.yaml", **overrides), dest / "out"


def test_a_killed_run_resumes_to_the_same_end_as_an_uninterrupted_one(
        killed_run, tiny_model, tmp_path):
    """Same final step; resumed_from is the checkpoint; for every step after it the logged
    learning rate is identical and the loss equal within 1e-4 relative (fp32 on CPU, the
    same kernels and batches: in practice bit-identical); the result's train_loss (the mean
    over the steps this process ran) and final_train_loss match the uninterrupted run's."""
    _, _, data, ckpt_step = killed_run
    config, out = copy_of(killed_run, tmp_path)
    before = per_step(logged(out))  # steps the killed process got through
    resumed = run_train(config)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    full_out = tmp_path / "full"
    full = run_train(config_for(tiny_model, data, full_out, tmp_path / "full.yaml"))
    assert full.returncode == 0, full.stderr[-3000:]

    res = json.loads((out / "result.json").read_text())
    ref = json.loads((full_out / "result.json").read_text())
    assert res["global_step"] == ref["global_step"] == MAX_STEPS
    assert res["resumed_from"] and Path(res["resumed_from"]).name == f"checkpoint-{ckpt_step}"
    assert ref["resumed_from"] is None

    session = last_session(logged(out))
    assert session[0]["step"] == ckpt_step  # the resumed process started at the checkpoint
    after, want = per_step(session), per_step(logged(full_out))
    assert sorted(after) == list(range(ckpt_step + 1, MAX_STEPS + 1))
    for step, row in after.items():
        assert row["learning_rate"] == want[step]["learning_rate"], step
        assert row["loss"] == pytest.approx(want[step]["loss"], rel=1e-4), step
    for step, row in before.items():  # the killed process too followed the same path
        assert row["loss"] == pytest.approx(want[step]["loss"], rel=1e-4), step

    tail = [want[s]["loss"] for s in after]
    assert res["train_loss"] == pytest.approx(sum(tail) / len(tail), rel=1e-4)
    assert res["final_train_loss"] == pytest.approx(ref["final_train_loss"], rel=1e-4)
    from safetensors.torch import load_file

    a = load_file(out / "adapter" / "adapter_model.safetensors")
    b = load_file(full_out / "adapter" / "adapter_model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert (a[k] - b[k]).abs().max().item() < 1e-5, k


def test_a_resume_with_another_adapter_or_other_data_is_refused(killed_run, tmp_path):
    """Changing lora.r, or the train file's bytes, after a kill: exit 2, stderr names the
    field (adapter.r, train_sha256) with the checkpoint's and the config's values, and not a
    file in the output dir is changed or deleted."""
    model, _, data, _ = killed_run
    config, out = copy_of(killed_run, tmp_path, **{"lora.r": 8})
    kept = snapshot(out)
    r = run_train(config)
    assert r.returncode == 2, r.stderr[-3000:]
    assert "adapter.r: checkpoint has 16, this config has 8" in r.stderr
    assert "cannot resume" in r.stderr and "new output_dir" in r.stderr
    assert snapshot(out) == kept

    other = tmp_path / "other.jsonl"
    other.write_text("\n".join(data.read_text(encoding="utf-8").splitlines()[:-1]) + "\n",
                     encoding="utf-8")
    from ftagent.tools.train.resume import file_sha256

    r = run_train(config_for(model, other, out, tmp_path / "c2.yaml"))
    assert r.returncode == 2, r.stderr[-3000:]
    line = next(x for x in r.stderr.splitlines() if "train_sha256:" in x)
    assert file_sha256(data)[:11] in line and file_sha256(other)[:11] in line
    assert "adapter." not in r.stderr  # only what really differs is named
    assert snapshot(out) == kept
