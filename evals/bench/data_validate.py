"""Validation speed and memory: ftagent's validator against a straightforward
pure-Python loop, on a generated chat JSONL, measured in the same run.

    .venv/bin/python evals/bench/data_validate.py --rows 1000000 --rounds 2

Each measurement runs in its own process, so peak RSS is that measurement's alone; with
--rounds the order alternates and the table shows medians.
The baseline is the loop most fine-tuning scripts carry (json.loads per line, role and
emptiness checks, a set of serialised rows for exact duplicates) plus datasketch
MinHash + MinHashLSH per row for near-duplicates, timed on a subsample and extrapolated
(it would take far longer on every row).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))


def generate(path: Path, rows: int, seed: int = 7) -> None:
    """Chat rows of 10-60 + 20-120 words, with ~2% exact copies, ~3% near copies (one
    word changed) and ~0.1% malformed lines. Deterministic for a given seed."""
    import numpy as np

    rng = np.random.default_rng(seed)
    # 5,000 made-up lowercase words of 2-10 letters, plus 1% numbers (amounts, years):
    # text shaped like prose, since the PII and encoding pre-scans cost more on digits.
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    words = ["".join(rng.choice(letters, int(rng.integers(2, 11)))) for _ in range(4950)]
    vocab = np.array(words + [str(int(x)) for x in rng.integers(1, 3000, 50)])
    sys_msg = {"role": "system", "content": "You are a helpful assistant."}
    recent: list[str] = []
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(rows):
            r = rng.random()
            if r < 0.001:
                fh.write('{"messages": [\n')
                continue
            if r < 0.021 and recent:
                fh.write(recent[int(rng.integers(len(recent)))])
                continue
            if r < 0.051 and recent:
                row = json.loads(recent[int(rng.integers(len(recent)))])
                words = row["messages"][2]["content"].split()
                words[int(rng.integers(len(words)))] = "changed"
                row["messages"][2]["content"] = " ".join(words)
                line = json.dumps(row) + "\n"
            else:
                user = " ".join(vocab[rng.integers(0, 5000, int(rng.integers(10, 60)))])
                answer = " ".join(vocab[rng.integers(0, 5000, int(rng.integers(20, 120)))])
                line = (
                    json.dumps(
                        {
                            "messages": [
                                sys_msg,
                                {"role": "user", "content": user},
                                {"role": "assistant", "content": answer},
                            ]
                        }
                    )
                    + "\n"
                )
            fh.write(line)
            recent.append(line)
            if len(recent) > 1000:
                recent = recent[-500:]


def cpu_seconds() -> float:
    """CPU time of this process and its finished children: on a machine shared with other
    work it moves far less than wall time does."""
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return time.process_time() + kids.ru_utime + kids.ru_stime


def ours(path: str, near_dup: bool) -> dict:
    from ftagent.tools.data import PrepareOptions, validate_dataset

    t, cpu = time.perf_counter(), cpu_seconds()
    r = validate_dataset(path, PrepareOptions(near_dup_threshold=0.85 if near_dup else None))
    found = {c.name: c.count for c in r.checks if c.count}
    return {
        "seconds": time.perf_counter() - t,
        "cpu_seconds": cpu_seconds() - cpu,
        "rows": r.rows_read,
        "found": found,
    }


def baseline(path: str, near_dup_rows: int) -> dict:
    """The straightforward loop; near-dup with datasketch on the first `near_dup_rows`."""
    t, cpu = time.perf_counter(), cpu_seconds()
    seen, issues, texts, rows = set(), {"unparsable": 0, "bad": 0, "dup": 0}, [], 0
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            rows += 1
            try:
                ex = json.loads(line)
            except json.JSONDecodeError:
                issues["unparsable"] += 1
                continue
            msgs = ex.get("messages", [])
            roles = [m.get("role") for m in msgs]
            if (
                not msgs
                or roles[-1] != "assistant"
                or any(not str(m.get("content", "")).strip() for m in msgs)
            ):
                issues["bad"] += 1
                continue
            key = json.dumps(ex, sort_keys=True)
            if key in seen:
                issues["dup"] += 1
                continue
            seen.add(key)
            if len(texts) < near_dup_rows:
                texts.append(" ".join(m["content"] for m in msgs if m["role"] != "system"))
    checks_s, checks_cpu = time.perf_counter() - t, cpu_seconds() - cpu
    from datasketch import MinHash, MinHashLSH

    t = time.perf_counter()
    lsh = MinHashLSH(threshold=0.85, num_perm=64)
    near = 0
    for i, text in enumerate(texts):
        words = text.lower().split()
        m = MinHash(num_perm=64)
        for j in range(len(words) - 2):
            m.update(" ".join(words[j : j + 3]).encode())
        if lsh.query(m):
            near += 1
        lsh.insert(str(i), m)
    near_s = time.perf_counter() - t
    return {
        "seconds": checks_s,
        "cpu_seconds": checks_cpu,
        "rows": rows,
        "near_seconds": near_s,
        "near_rows": len(texts),
        "found": issues | {"near": near},
    }


def child(args) -> None:
    if args.child == "ours":
        res = ours(args.path, near_dup=True)
    elif args.child == "ours-checks":
        res = ours(args.path, near_dup=False)
    else:
        res = baseline(args.path, args.baseline_neardup_rows)
    res["maxrss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    # worker processes (first pass, MinHash signatures): the largest one's peak
    res["worker_maxrss_mb"] = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(json.dumps(res))


def run_child(mode: str, path: Path, extra: list[str]) -> dict:
    out = subprocess.run(
        [sys.executable, __file__, "--child", mode, "--path", str(path), *extra],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def _median(results: list[dict]) -> dict:
    """Each number the median over rounds (the `found` counts are the same in each)."""
    out = dict(results[-1])
    for key, value in out.items():
        if isinstance(value, (int, float)):
            out[key] = statistics.median(r[key] for r in results)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--rows", type=int, default=1_000_000)
    ap.add_argument("--baseline-neardup-rows", type=int, default=20_000)
    ap.add_argument("--rounds", type=int, default=1, help="the order alternates; medians")
    ap.add_argument(
        "--data", help="keep the generated file here and reuse it (generating takes minutes)"
    )
    ap.add_argument("--child", choices=["ours", "ours-checks", "baseline"])
    ap.add_argument("--path")
    args = ap.parse_args()
    if args.child:
        child(args)
        return
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(args.data) if args.data else Path(tmp) / "bench.jsonl"
        t = time.perf_counter()
        if not path.exists():
            generate(path, args.rows)
            print(f"generated {args.rows:,} rows in {time.perf_counter() - t:.0f} s")
        print(f"input: {path} ({path.stat().st_size / 2**20:.0f} MiB)")
        extra = ["--baseline-neardup-rows", str(args.baseline_neardup_rows)]
        runs: dict[str, list[dict]] = {"baseline": [], "ours-checks": [], "ours": []}
        for r in range(args.rounds):
            order = ["baseline", "ours-checks", "ours"]
            for mode in order if r % 2 == 0 else order[::-1]:
                runs[mode].append(run_child(mode, path, extra))
            line = ", ".join(f"{m} {runs[m][-1]['seconds']:.1f} s" for m in order)
            print(f"round {r + 1}: {line}", flush=True)
    base, checks, full = (_median(runs[m]) for m in ("baseline", "ours-checks", "ours"))
    n = base["rows"]
    base_near_rate = base["near_rows"] / base["near_seconds"]
    base_total = base["seconds"] + n / base_near_rate
    print(f"\n{'':34}{'seconds':>10}{'rows/s':>12}{'peak RSS MB':>13}{'CPU s':>8}")
    print(
        f"{'baseline: parse + checks + exact':34}{base['seconds']:10.1f}"
        f"{n / base['seconds']:12,.0f}{base['maxrss_mb']:13,.0f}{base['cpu_seconds']:8.1f}"
    )
    print(
        f"{'baseline: + near-dup (extrapolated)':34}{base_total:10.1f}{n / base_total:12,.0f}"
        f"{'':>13}   (datasketch {base_near_rate:,.0f} rows/s on {base['near_rows']:,})"
    )
    print(
        f"{'ftagent: parse + checks + exact':34}{checks['seconds']:10.1f}"
        f"{n / checks['seconds']:12,.0f}{checks['maxrss_mb']:13,.0f}{checks['cpu_seconds']:8.1f}"
    )
    print(
        f"{'ftagent: + near-dup':34}{full['seconds']:10.1f}{n / full['seconds']:12,.0f}"
        f"{full['maxrss_mb']:13,.0f}{full['cpu_seconds']:8.1f}"
    )
    print(
        f"\nratio parse+checks: {base['seconds'] / checks['seconds']:.2f}x the baseline's speed; "
        f"with near-dup: {base_total / full['seconds']:.2f}x; CPU seconds, ftagent / baseline: "
        f"{checks['cpu_seconds'] / base['cpu_seconds']:.2f}"
    )
    print(
        f"near-dup alone: {full['seconds'] - checks['seconds']:.1f} s (target < 120 s at 1M rows)"
    )
    print(f"largest worker process peak RSS: {full['worker_maxrss_mb']:,.0f} MB")
    print(f"found by ftagent: {full['found']}")
    print(f"found by baseline: {base['found']}")


if __name__ == "__main__":
    main()
