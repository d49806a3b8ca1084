"""The GPU check of issue 24: one command that writes results.json and report.md.

    python -m evals.gpu.check OUT_DIR [--tiny] [--device cuda|cpu] [--only SECTION ...]
        [--budget 420] [--tokenizer DIR]

On a lent H100 (through evals/gpu/check.sh, which installs the carried wheels first) it
builds random-weight models from config (SmolLM2-135M's shape and a ~1B Llama shape),
then runs the sections below, each timed and in try/except, within a total budget (the
rest are recorded as skipped). `--tiny --device cpu` is the same code at tiny size, the
dry run tests/test_gpu_check.py keeps passing. README.md beside this file says how to run
it with the device tool and what the report holds.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from evals.gpu import environment, oom, serving, throughput, training  # noqa: E402
from evals.gpu.context import FULL, TINY, Context  # noqa: E402
from evals.gpu.report import render  # noqa: E402
from evals.gpu.runner import REPORT, RESULTS, Section, run_sections, write_json  # noqa: E402

DEFAULT_BUDGET_S = 420.0
CARRIED_TOKENIZER = ROOT / ".whl" / "smollm2-tokenizer"  # written by evals/gpu/prepare.py


def _method(name: str):
    return lambda ctx: training.train_method(ctx, name)


# In order of importance: a budget that runs out trims the end.
SECTIONS = [
    Section("environment", "GPU, versions, optional kernels", environment.run),
    Section("lora_sft", "LoRA SFT: loss, peak memory vs estimate", _method("lora_sft")),
    Section("throughput", "trainer vs TRL tuned: real tokens/s, MFU", throughput.run),
    Section("qlora_nf4", "QLoRA nf4 (bitsandbytes) SFT", _method("qlora_nf4")),
    Section("full_sft", "full fine-tuning", _method("full_sft")),
    Section("dpo", "DPO (LoRA, base as reference)", _method("dpo")),
    Section("oom_backoff", "out-of-memory back-off, for real", oom.run, needs_cuda=True),
    Section("generation", "batched generation vs one-by-one", serving.generation),
    Section("serve", "ftagent serve, 8 concurrent clients", serving.serve),
]
NAMES = [s.name for s in SECTIONS]


def tokenizer_dir(given: Path | None) -> Path:
    """SmolLM2's tokenizer: given, carried (the device machine has no hub), or the
    bundled model's."""
    if given:
        return given
    if CARRIED_TOKENIZER.is_dir():
        return CARRIED_TOKENIZER
    from ftagent.tools.models import resolve_model

    return resolve_model("smollm2-135m-instruct").path


def parse(argv: list[str] | None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("out", type=Path, help="folder for results.json and report.md")
    ap.add_argument("--tiny", action="store_true", help="tiny model and sizes (the CPU dry run)")
    ap.add_argument("--device", choices=["cuda", "cpu"], default=None,
                    help="default: cuda when available")
    ap.add_argument("--only", nargs="+", choices=NAMES, default=None, help="these sections")
    ap.add_argument("--budget", type=float, default=DEFAULT_BUDGET_S,
                    help="seconds; sections not started by then are skipped")
    ap.add_argument("--tokenizer", type=Path, default=None, help="SmolLM2 tokenizer folder")
    ap.add_argument("--work", type=Path, default=None,
                    help="models, data and runs (default: a temporary folder, removed after; "
                    "never under OUT_DIR, whose files the device tool copies back)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    a = parse(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing is fetched, here or there
    import torch
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    device = a.device or ("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        print("error: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    a.out.mkdir(parents=True, exist_ok=True)
    size = TINY if a.tiny else FULL
    work = a.work or Path(tempfile.mkdtemp(prefix="ftagent-gpu-check-"))
    ctx = Context(out=a.out, work=work, device=device, size=size,
                  tokenizer_dir=tokenizer_dir(a.tokenizer), budget_s=a.budget)
    sections = [s for s in SECTIONS if a.only is None or s.name in a.only]
    when = time.strftime("%Y-%m-%d %H:%M:%S %Z")
    gpu = torch.cuda.get_device_name(0) if device == "cuda" else None

    def write(done: dict) -> None:
        meta = {"when": when, "device": device, "gpu": gpu, "size": "tiny" if a.tiny else "full",
                "budget_s": a.budget, "spent_s": time.monotonic() - ctx.started,
                "models": ctx.built, "tokenizer": str(ctx.tokenizer_dir)}
        write_json(a.out / RESULTS, {**meta, "sections": done})
        (a.out / REPORT).write_text(render(meta, done), encoding="utf-8")

    try:
        done = run_sections(sections, ctx, write)
    finally:
        if a.work is None:
            shutil.rmtree(work, ignore_errors=True)
    bad = [n for n, s in done.items() if s["status"] in ("error", "check_failed")]
    print(f"[gpu-check] wrote {a.out / RESULTS} and {a.out / REPORT}"
          + (f"; not ok: {', '.join(bad)}" if bad else ""), flush=True)
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
