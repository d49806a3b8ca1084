"""The GPU check's CPU dry run (evals/gpu): the same script a lent H100 runs, at tiny size,
so it cannot rot between the sessions that are lent one. Every section must run (or be
skipped only for lack of CUDA), every training method must learn, and the report must
say what each section found. About 3 minutes on 2 shared cores: seven child
processes (one per training run, as on the GPU, where each needs its own CUDA peak),
each importing torch, transformers and TRL."""

import json
import math
import subprocess
import sys
from pathlib import Path

from evals.gpu.check import NAMES
from evals.gpu.training import METHODS

ROOT = Path(__file__).resolve().parents[1]


def test_gpu_check_dry_run_on_cpu(tmp_path, bundled_model):
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "evals.gpu.check", str(out), "--tiny",
                        "--device", "cpu", "--tokenizer", str(bundled_model.path),
                        "--work", str(tmp_path / "work")],
                       cwd=ROOT, capture_output=True, text=True, timeout=900)
    results = json.loads((out / "results.json").read_text())
    sections = results["sections"]
    assert list(sections) == NAMES, r.stdout[-2000:]
    for name, s in sections.items():
        if s["status"] == "skipped":
            assert s["reason"] == "skipped: needs CUDA", (name, s["reason"])
        else:
            assert s["status"] == "ok", (name, s.get("error"), s.get("traceback"),
                                         s.get("result", {}).get("checks"))
    assert sections["oom_backoff"]["status"] == "skipped"  # CUDA's OOM only
    assert r.returncode == 0, r.stderr[-3000:]

    for name in METHODS:
        losses = sections[name]["result"]["losses"]
        assert len(losses) == 4 and all(math.isfinite(x) for x in losses), (name, losses)
        assert sum(losses[2:]) < sum(losses[:2]), (name, losses)  # falling
        assert sections[name]["result"]["peak_gb"] > 0
        assert sections[name]["result"]["estimate"]["gb"] > 0
    tiny = sections["throughput"]["result"]["models"]["tiny"]["summary"]
    assert tiny["TRL tuned"]["tokens_per_s"] > 0 and tiny["ftagent"]["vs_tuned"] > 0
    assert sections["serve"]["result"]["modes"]["batching"]["requests"] == 8
    assert sections["generation"]["result"]["identical"] >= 1

    report = (out / "report.md").read_text()
    for name in NAMES:
        assert f"## {name}:" in report
    assert "skipped: needs CUDA" in report
