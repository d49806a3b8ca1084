"""How fast the terminal app paints its first screen, two ways, against a bare
interpreter start measured in the same run:

- headless: a fresh process imports the app, runs it with Textual's `run_test()` and
  reports when the first frame holds the main screen (process start to first paint);
- tmux: the real `ftagent` with no arguments in a tmux window, from launch until the
  side panel is on the terminal (what a person waits for), polled every 10 ms.

.venv/bin/python evals/bench/tui_startup.py [--repeat 5]
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

CHILD = r"""
import asyncio, io, sys, time
from pathlib import Path
from rich.console import Console
from ftagent.tui.app import FtagentApp

def painted(app):
    console = Console(width=120, height=40, file=io.StringIO(), record=True, color_system=None)
    console.print(app.screen._compositor.render_update(full=True, simplify=True))
    return "Workflow" in console.export_text()

async def main():
    app = FtagentApp(runs_root=Path(sys.argv[1]), offer_resume=False)
    async with app.run_test(size=(120, 40)) as pilot:
        while not painted(app):
            await asyncio.sleep(0.005)
        print("painted", flush=True)
        heavy = [m for m in ("torch", "transformers", "langgraph") if m in sys.modules]
        print("heavy:" + ",".join(heavy), flush=True)

asyncio.run(main())
"""


def headless_once(runs: Path) -> tuple[float, str]:
    start = time.perf_counter()
    proc = subprocess.Popen([sys.executable, "-c", CHILD, str(runs)], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    first = proc.stdout.readline()
    took = time.perf_counter() - start
    rest = proc.stdout.read()
    proc.wait()
    assert first.strip() == "painted", first + rest
    return took, rest.strip().removeprefix("heavy:")


def tmux_once(runs: Path, home: Path) -> float | None:
    from evals.tui.tmux_drive import program, tmux, wait_for

    session = f"ftagent-bench-{time.monotonic_ns()}"
    start = time.perf_counter()
    tmux("new-session", "-d", "-s", session, "-x", "120", "-y", "40", "-c", str(ROOT),
         "bash", "-c", "exec " + program(runs, home))
    try:
        seen = wait_for(session, "Workflow", 20)
        return None if seen is None else time.perf_counter() - start
    finally:
        subprocess.run(["tmux", "kill-session", "-t", session], capture_output=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ftagent-bench-"))
    bare = []
    for _ in range(args.repeat):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", "pass"], check=True)
        bare.append(time.perf_counter() - t)
    runs = [headless_once(tmp / "runs") for _ in range(args.repeat)]
    heavy = {h for _, h in runs if h}
    print(f"python -c pass                      : {statistics.median(bare) * 1000:7.0f} ms "
          f"(median of {args.repeat})")
    print(f"headless: process start -> 1st paint: "
          f"{statistics.median(t for t, _ in runs) * 1000:7.0f} ms "
          f"(heavy libraries loaded: {', '.join(heavy) or 'none'})")
    if shutil.which("tmux"):
        seen = [tmux_once(tmp / "runs", tmp / "home") for _ in range(args.repeat)]
        ok = [s for s in seen if s is not None]
        if ok:
            print(f"tmux: `ftagent` launch -> main screen: {statistics.median(ok) * 1000:7.0f} ms "
                  f"(median of {len(ok)}; includes tmux start and 10 ms polling)")
        else:
            print("tmux: the main screen never appeared")
    else:
        print("tmux: not installed, skipped")
    print("target: first paint under 1 s")


if __name__ == "__main__":
    main()
