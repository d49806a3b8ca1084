"""How fast `ftagent --help` starts, against a bare interpreter start in the same run.

.venv/bin/python evals/bench/cli_startup.py [--repeat 10]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time


def best_of(cmd: list[str], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        subprocess.run(cmd, check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=10)
    args = ap.parse_args()
    bare = best_of([sys.executable, "-c", "pass"], args.repeat)
    cli = best_of([sys.executable, "-m", "ftagent", "--help"], args.repeat)
    print(f"python -c pass : {bare * 1000:7.1f} ms (median of {args.repeat})")
    print(f"ftagent --help : {cli * 1000:7.1f} ms")
    print(f"ratio          : {cli / bare:7.2f}x the bare interpreter; target < 0.5 s absolute")


if __name__ == "__main__":
    main()
