"""Run the whole workflow headless on each trainable dataset in ../shared/data, with default
decisions, and print one Markdown table of where each run ended and why.

    python -m evals.workflows                          # every dataset, subsets (datasets.py)
    python -m evals.workflows --only banking77,sgd     # some of them
    python -m evals.workflows --full --timeout 7200    # every row, 2 h per run
    python -m evals.workflows --out DIR                # default evals/workflows/out/<time>/

Each dataset is one real `ftagent run --goal G --data F --approve all --run-dir OUT/<name>`
subprocess: every gate whose automatic check passes is approved, the first one that fails
stops the run (exit 3), as a headless user would see it. The subset rules and why they
were chosen are in datasets.py; subset files go to OUT/data/, the CLI's output to
OUT/<name>.log, the table to OUT/table.md and everything read to OUT/results.json
(rewritten after each run).

Wall time is the subprocess's. Peak RSS is the largest sum of the resident memory of the
`ftagent` process and all its descendants (the training job, the isolated load check, the
server), sampled every 0.5 s with psutil: pages shared between processes count once per
process, and a spike shorter than the interval can be missed.

../shared/data exists only on the team's machines (never in CI): without it this exits 2.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

from evals.workflows.datasets import DATASETS, SHARED, materialise

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
POLL_S = 0.5


def cli_command() -> list[str]:
    """The installed `ftagent` next to this Python, else the same entry point as a module."""
    exe = Path(sys.executable).with_name("ftagent")
    return [str(exe)] if exe.exists() else [sys.executable, "-m", "ftagent"]


def tree_rss(proc: psutil.Process) -> int:
    total = 0
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return 0
    for p in family:
        try:
            total += p.memory_info().rss
        except psutil.NoSuchProcess:
            pass
    return total


def stop_tree(proc: psutil.Process) -> None:
    """Terminate the run and every descendant (the trainer runs in its own session, so a
    process-group kill would miss it), then kill what is left after 15 s."""
    try:
        family = [proc, *proc.children(recursive=True)]
    except psutil.NoSuchProcess:
        return
    for p in family:
        try:
            p.terminate()
        except psutil.NoSuchProcess:
            pass
    _, alive = psutil.wait_procs(family, timeout=15)
    for p in alive:
        try:
            p.kill()
        except psutil.NoSuchProcess:
            pass


def run_measured(cmd: list[str], log_path: Path, timeout_s: float) -> dict:
    """Run `cmd` with its output in log_path; its exit code, wall time, peak tree RSS."""
    started = time.monotonic()
    with open(log_path, "wb") as log:
        child = subprocess.Popen(cmd, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
                                 stdin=subprocess.DEVNULL)
    proc, peak, timed_out = psutil.Process(child.pid), 0, False
    while True:
        try:
            child.wait(timeout=POLL_S)
            break
        except subprocess.TimeoutExpired:
            peak = max(peak, tree_rss(proc))
        if time.monotonic() - started > timeout_s:
            timed_out = True
            stop_tree(proc)
            child.wait()
            break
    return {"exit_code": child.returncode, "wall_s": round(time.monotonic() - started, 1),
            "peak_rss_mb": round(peak / 2**20), "timed_out": timed_out}


def pick(only: str | None) -> list:
    if not only:
        return list(DATASETS)
    names = [n.strip() for n in only.split(",") if n.strip()]
    known = {d.name: d for d in DATASETS}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise ValueError(f"unknown dataset(s) {', '.join(unknown)}; known: {', '.join(known)}")
    return [known[n] for n in names]


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(prog="python -m evals.workflows",
                                 description=__doc__.split("\n\n")[0],
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--only", metavar="NAME[,NAME]",
                    help=f"datasets to run (default all: {', '.join(d.name for d in DATASETS)})")
    size = ap.add_mutually_exclusive_group()
    size.add_argument("--subset", dest="subset", action="store_true", default=True,
                      help="the documented subsets of evals/workflows/datasets.py (default)")
    size.add_argument("--full", dest="subset", action="store_false", help="every row")
    ap.add_argument("--out", type=Path, metavar="DIR",
                    help="output folder (default evals/workflows/out/<timestamp>/)")
    ap.add_argument("--timeout", type=float, default=1800, metavar="S",
                    help="seconds per run before it is killed (default 1800)")
    return ap.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from evals.workflows.row import read_run, run_row
    from evals.workflows.table import markdown_table

    args = parse_args(argv)
    if not SHARED.is_dir():
        print(f"error: {SHARED} not found. This eval needs the team's shared datasets "
              "(../shared/data next to the repository); they are not in CI.", file=sys.stderr)
        return 2
    try:
        chosen = pick(args.only)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    out = (args.out or HERE / "out" / time.strftime("%Y%m%d-%H%M%S")).resolve()
    taken = [d.name for d in chosen if (out / d.name).exists()]
    if taken:
        print(f"error: {out} already holds runs for {', '.join(taken)}; pick another --out",
              file=sys.stderr)
        return 2
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for i, ds in enumerate(chosen, 1):
        data, n, rule = materialise(ds, args.subset, out / "data")
        run_dir, log = out / ds.name, out / f"{ds.name}.log"
        print(f"[{i}/{len(chosen)}] {ds.name}: {n} rows ({rule}), log {log}", flush=True)
        cmd = [*cli_command(), "run", "--goal", ds.goal, "--data", str(data),
               "--approve", "all", "--run-dir", str(run_dir)]
        measured = run_measured(cmd, log, args.timeout)
        manifest, events = read_run(run_dir)
        tail = log.read_text(encoding="utf-8", errors="replace")[-4000:]
        row = {"dataset": ds.name, "rows": n, "rule": rule, "data": str(data),
               "run_dir": str(run_dir), "command": cmd, **measured,
               **run_row(manifest, events, timed_out=measured["timed_out"],
                         timeout_s=args.timeout, exit_code=measured["exit_code"],
                         log_tail=tail)}
        rows.append(row)
        print(f"      {row['ended']} after {row['wall_s'] / 60:.1f} min", flush=True)
        (out / "results.json").write_text(json.dumps(rows, indent=2, default=str) + "\n",
                                          encoding="utf-8")
    table = markdown_table(rows)
    (out / "table.md").write_text(table + "\n", encoding="utf-8")
    print(table)
    print(f"\nPeak RSS: ftagent and its descendants, summed, sampled every {POLL_S} s. "
          f"Runs, logs, table.md and results.json: {out}")
    return 0
