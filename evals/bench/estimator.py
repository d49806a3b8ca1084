"""The memory and time estimate against real peak memory and step times of real training runs.

    nice -n 10 .venv/bin/python evals/bench/estimator.py [--steps 4] [--only NAME ...]
        [--json results.jsonl]

Each set-up runs `python -m ftagent.tools.train` on the bundled SmolLM2-135M for a few steps
in its own process, one at a time, and reads what the run logged: the peak RSS (the CUDA
allocator's peak on a GPU), and each step's time and tokens. The estimate is
`tools.plan.estimate.estimate_for`, the one the planner and the pre-flight call, with the
run's config (`settings_of`) and the train file's token facts (`file_token_facts`), taken
for the micro-batches the short run really computed: the trainer's seeded sampler is
replayed (`run_batches`; checked against the tokens each step logged), so a run that met
only a few of the data's long rows is compared with the estimate of those rows. The
whole-run estimate (the file's longest row beside batch - 1 mean rows: within 3% of the
expected largest micro-batch of an epoch, simulated on all three data sets) is printed too.

Data: the bundled demo (support intents, ~115-token rows, short answers), self_instruct
(175 rows up to ~1,400 tokens, long answers: the run of the issue that pre-flight stopped)
and BANKING77 (first 2 rows per intent; every row carries the 77-label system prompt, ~570
tokens shared, ~6 loss tokens). The shared-prefix set-up measures sharing only when the
trainer has it (tools/train/shared_prefix.py); otherwise it runs and is estimated unshared,
and the estimate with sharing is printed beside it.

The seconds per step are compared on the micro-batches the timed steps (2..N; the first
warms up) computed: the estimate's FLOPs over DEVICE_FLOPS (this machine's rate,
`tools.plan.fit.device_rate`), against the wall clock and against the run's CPU seconds /
torch threads (what the step takes with the cores to itself, on a shared machine).
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))
SHARED = ROOT.parent / "shared" / "data"
ALL_LINEAR = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]

SETUPS = [  # (name, data, overrides of the training config)
    ("LoRA fp32, batch 8", "demo", {"method": "lora", "bf16": False, "batch_size": 8}),
    ("LoRA bf16, batch 8", "demo", {"method": "lora", "bf16": True, "batch_size": 8}),
    ("LoRA bf16, batch 2", "demo", {"method": "lora", "bf16": True, "batch_size": 2}),
    ("LoRA fp32, batch 16, r 64 all-linear", "demo",
     {"method": "lora", "bf16": False, "batch_size": 16, "lora.r": 64, "lora.alpha": 128,
      "lora.target_modules": ALL_LINEAR}),
    ("LoRA fp32, batch 8, gradient checkpointing", "demo",
     {"method": "lora", "bf16": False, "batch_size": 8, "gradient_checkpointing": True}),
    ("LoRA fp32, batch 16, gradient checkpointing", "demo",
     {"method": "lora", "bf16": False, "batch_size": 16, "gradient_checkpointing": True}),
    ("QLoRA nf4, bf16 compute, batch 8", "demo",
     {"method": "qlora", "bf16": True, "batch_size": 8}),
    ("full bf16, batch 4", "demo",
     {"method": "full", "bf16": True, "batch_size": 4, "learning_rate": 2e-5}),
    ("LoRA bf16, batch 8, self_instruct", "self_instruct",
     {"method": "lora", "bf16": True, "batch_size": 8}),
    ("LoRA bf16, batch 8, self_instruct, loss on every token", "self_instruct",
     {"method": "lora", "bf16": True, "batch_size": 8, "completion_only_loss": False}),
    ("LoRA bf16, batch 8, BANKING77 shared prefix", "banking77",
     {"method": "lora", "bf16": True, "batch_size": 8, "shared_prefix": True}),
]


def sharing_in_trainer() -> bool:
    return importlib.util.find_spec("ftagent.tools.train.shared_prefix") is not None


def source(name: str, tmp: Path) -> Path:
    """The raw file a data set is prepared from (BANKING77: the first 2 rows per intent)."""
    if name == "demo":
        return ROOT / "tools/bundled/demo/support_intents.jsonl"
    if name == "self_instruct":
        return SHARED / "self_instruct/seed_tasks.jsonl"
    from evals.workflows.datasets import first_per, read_jsonl

    rows = first_per("category", 2)(read_jsonl(SHARED / "banking77/train.jsonl"))
    out = tmp / "banking77.jsonl"
    out.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return out


def run_training(config: Path) -> list[tuple[float, float]]:
    """Train in a child process; return its (wall clock, CPU seconds) sampled every 0.2 s,
    so step times can also be read as CPU time on a machine other jobs share."""
    import os
    import time

    child = subprocess.Popen([sys.executable, "-m", "ftagent.tools.train", str(config)],
                             cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tick, samples = os.sysconf("SC_CLK_TCK"), []
    while child.poll() is None:
        try:
            fields = Path(f"/proc/{child.pid}/stat").read_text().rsplit(")", 1)[1].split()
            samples.append((time.time(), (int(fields[11]) + int(fields[12])) / tick))
        except (OSError, IndexError, ValueError):
            pass
        time.sleep(0.2)
    if child.returncode:
        raise RuntimeError(f"training failed: {child.stderr.read().decode()[-2000:]}")
    return samples


def cpu_at(samples: list[tuple[float, float]], t: float) -> float:
    """The child's CPU seconds at wall time t (the last sample before it)."""
    before = [c for w, c in samples if w <= t]
    return before[-1] if before else 0.0


def measured(out: Path, samples: list[tuple[float, float]], threads: int) -> dict:
    """Peak memory, and the timed steps' seconds (wall, and CPU / threads: the time with
    the cores to itself) and tokens, from metrics.jsonl."""
    rows = [json.loads(x) for x in (out / "metrics.jsonl").read_text().splitlines()]
    logs = [r for r in rows if r.get("event") == "log" and "loss" in r]
    peak = max(r.get("cuda_peak_mb", r.get("peak_rss_mb", 0)) for r in logs) / 1024
    tokens = [b["num_tokens"] - a["num_tokens"] for a, b in zip(logs, logs[1:], strict=False)]
    first = logs[0]["num_tokens"] if logs else 0
    pairs = list(zip(logs, logs[1:], strict=False))
    times = [b["time"] - a["time"] for a, b in pairs]
    cpu = [(cpu_at(samples, b["time"]) - cpu_at(samples, a["time"])) / threads for a, b in pairs]
    return {
        "peak_gb": peak,
        "device": "cuda" if any("cuda_peak_mb" in r for r in logs) else "cpu",
        "largest_batch_tokens": max([first, *tokens]),
        "step_s": sum(times) / len(times) if times else None,
        "step_cpu_s": sum(cpu) / len(cpu) if cpu else None,
        "step_tokens": sum(tokens) / len(tokens) if tokens else None,
    }


def run_batches(n_rows: int, batch: int, steps: int, seed: int) -> list[list[int]]:
    """The rows of each micro-batch the run computed: the trainer's seedable sampler draws
    `torch.randperm` with the seed (epoch 0), and batches take consecutive draws."""
    import torch

    g = torch.Generator()
    g.manual_seed(seed)
    order = torch.randperm(n_rows, generator=g).tolist()
    return [order[k * batch:(k + 1) * batch] for k in range(steps)]


def batch_facts(facts, lengths: list[tuple[int, int]], rows: list[int]):
    """Token facts that make `micro_batches` give this micro-batch exactly: its longest
    row, and its other rows' mean, with their loss tokens."""
    picked = sorted((lengths[i] for i in rows), reverse=True)
    (top, top_loss), rest = picked[0], picked[1:] or [picked[0]]
    return facts.model_copy(update={
        "longest": top, "loss_longest": top_loss,
        "mean": sum(t for t, _ in rest) / len(rest),
        "loss_mean": sum(lo for _, lo in rest) / len(rest)})


def row_lengths(path: str, tokenizer) -> list[tuple[int, int]]:
    """(tokens, loss tokens) of each row, with the chat template."""
    from ftagent.tools.data.tokens import measure

    rows = [json.loads(x) for x in Path(path).read_text().splitlines() if x.strip()]
    return [(m.total, m.total - m.prompt) for m in measure(tokenizer, rows)]


def estimated(cfg, facts, lengths, steps: int, device: str, meas: dict) -> dict:
    """The estimate of the micro-batches the run computed (the largest one's memory; the
    timed steps' seconds), and the whole-run estimate from the file's token facts."""
    from ftagent.tools.hardware import probe
    from ftagent.tools.plan.estimate import estimate_for, settings_of, shape_from_config
    from ftagent.tools.plan.fit import device_rate

    shape = shape_from_config(json.loads((Path(cfg.model) / "config.json").read_text()))
    precision = "bf16" if cfg.bf16 is True else "fp32"
    run = settings_of(cfg, precision)
    batches = run_batches(len(lengths), cfg.batch_size, steps, cfg.seed)
    ests = [estimate_for(shape, run, batch_facts(facts, lengths, rows), device)
            for rows in batches]
    tokens = [sum(lengths[i][0] for i in rows) for rows in batches]
    top = max(ests, key=lambda e: e.total_gb)
    rate = device_rate(probe(ROOT), precision)
    timed = ests[1:]
    whole = estimate_for(shape, run, facts, device)
    step_s = sum(e.flops_per_step for e in timed) / len(timed) / rate if timed else None
    return {"est_gb": top.total_gb, "parts": top.parts_gb, "est_peak_tokens": top.peak_tokens,
            "batch_tokens": tokens, "whole_run_gb": whole.total_gb, "est_step_s": step_s}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--steps", type=int, default=4)
    ap.add_argument("--only", nargs="*", help="set-ups named exactly, else those whose name "
                    "contains one of these")
    ap.add_argument("--json", type=Path, help="append each set-up's numbers to this file")
    ap.add_argument("--rescore", type=Path, help="re-estimate the measurements recorded in "
                    "this --json file with the current estimate, without training")
    args = ap.parse_args()
    from ftagent.tools.config.train_config import apply_overrides, default_config, save_config
    from ftagent.tools.data import PrepareOptions, prepare_dataset
    from ftagent.tools.data.tokens import file_token_facts
    from ftagent.tools.models import resolve_model
    from ftagent.tools.plan.estimate import shape_from_config
    from transformers import AutoTokenizer

    model = resolve_model("smollm2-135m-instruct").path
    tokenizer = AutoTokenizer.from_pretrained(model)
    shape = shape_from_config(json.loads((model / "config.json").read_text()))
    sharing = sharing_in_trainer()
    import torch

    threads = torch.get_num_threads()
    recorded = {}
    if args.rescore:
        for line in args.rescore.read_text().splitlines():
            r = json.loads(line)
            recorded[r["name"]] = r  # the last measurement of each set-up
    rows, prepared = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        for name, data, overrides in SETUPS:
            if args.only and not chosen(name, args.only):
                continue
            if args.rescore and name not in recorded:
                continue
            if data not in prepared:
                report = prepare_dataset(source(data, tmp), tmp / data, PrepareOptions(
                    model=str(model), near_dup_threshold=None, max_length=2048))
                train = report.split_paths["train"]
                prepared[data] = (train, report.splits["train"],
                                  file_token_facts(train, tokenizer), row_lengths(train, tokenizer))
            train, n_train, facts, lengths = prepared[data]
            out = tmp / name.replace(" ", "_").replace(",", "")
            cfg = default_config(str(model), "lora", train, None, str(out), n_train,
                                 shape.params, False)
            wanted = overrides.get("shared_prefix", False)
            measured_sharing = recorded[name]["shared"] if args.rescore else sharing
            cfg = apply_overrides(cfg, {**overrides, "shared_prefix": wanted and measured_sharing,
                                        "max_length": 2048, "max_steps": args.steps,
                                        "save_steps": 1000})
            if args.rescore:
                meas = {k: recorded[name][k] for k in MEASURED}
            else:
                save_config(cfg, out / "config.yaml")
                meas = measured(out, run_training(out / "config.yaml"), threads)
            est = estimated(cfg, facts, lengths, args.steps, meas["device"], meas)
            if max(est["batch_tokens"]) != meas["largest_batch_tokens"]:
                print(f"{name}: the micro-batches were not reconstructed ({est['batch_tokens']}"
                      f" tokens, the run logged a largest of {meas['largest_batch_tokens']})")
            err = (est["est_gb"] - meas["peak_gb"]) / meas["peak_gb"]
            note = ""
            if wanted and not cfg.shared_prefix:
                on = cfg.model_copy(update={"shared_prefix": True})
                shared = estimated(on, facts, lengths, args.steps, meas["device"], meas)
                note = (f"  (trainer without sharing: run unshared; with a {facts.shared_prefix}"
                        f"-token shared prefix the estimate is {shared['est_gb']:.2f} GB, "
                        f"{shared['est_step_s']:.2f} s/step)")
            row = {"name": name, "data": data, "facts": facts.model_dump(), **meas, **est,
                   "shared": cfg.shared_prefix, "error": err}
            rows.append(row)
            if args.json:
                with args.json.open("a") as f:
                    f.write(json.dumps(row) + "\n")
            print(f"{name:46} measured {meas['peak_gb']:5.2f} GB  estimated {est['est_gb']:5.2f}"
                  f" GB  error {err:+4.0%}  {step_line(est, meas, threads)}{note}", flush=True)
    worst = max(abs(r["error"]) for r in rows)
    print(f"\nworst error {worst:.0%} over {len(rows)} set-ups (target within 25%)")


def chosen(name: str, only: list[str]) -> bool:
    """A set-up named exactly, or else one whose name contains a word given."""
    names = {n for n, _, _ in SETUPS}
    exact = [o for o in only if o in names]
    if exact:
        return name in exact
    return any(o.lower() in name.lower() for o in only)


MEASURED = ("peak_gb", "device", "largest_batch_tokens", "step_s", "step_cpu_s", "step_tokens")


def step_line(est: dict, meas: dict, threads: int) -> str:
    if not meas.get("step_s") or not est["est_step_s"]:
        return ""
    cpu = f", {meas['step_cpu_s']:5.2f} CPU/{threads}" if meas.get("step_cpu_s") else ""
    return f"s/step est {est['est_step_s']:5.2f} measured {meas['step_s']:6.2f} wall{cpu}"


if __name__ == "__main__":
    main()
