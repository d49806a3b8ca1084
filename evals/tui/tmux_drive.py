"""Drive the real `ftagent` program in tmux: start it with no arguments, wait for the
first screen, type /help, check the help text is on the screen, /quit, and check the
process is gone. Prints what it saw; exits 1 when a check fails.

With --data FILE [--model M], it then checks that state survives a quit mid-run: start a
workflow, approve the strategy and dataset gates with `a`, quit with ctrl+q while the
model trains, check the process ends at once, start `ftagent` again, accept the offer to
resume, and wait for the training gate.

.venv/bin/python evals/tui/tmux_drive.py [--runs-dir DIR] [--data FILE --model M] [--keep]
"""

from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
FIRST_SCREEN = "Workflow"  # the side panel's title: the main screen is drawn
HELP_TEXT = "/clear"  # a row of the /help table, short enough never to wrap


def tmux(*args: str) -> str:
    return subprocess.run(["tmux", *args], capture_output=True, text=True, check=True).stdout


def pane(session: str) -> str:
    return tmux("capture-pane", "-p", "-t", session)


def wait_for(session: str, text: str, timeout: float) -> float | None:
    """Seconds until `text` is on the screen, or None."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout:
        if text in pane(session):
            return time.perf_counter() - start
        time.sleep(0.02)
    return None


def program(runs_dir: Path, home: Path) -> str:
    """`ftagent` alone, as a person starts it, in an isolated home and runs folder."""
    exe = Path(sys.executable).with_name("ftagent")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "ftagent"]
    env = {"FTAGENT_HOME": str(home), "FTAGENT_RUNS_DIR": str(runs_dir), "TERM": "xterm-256color"}
    return shlex.join(["env", *(f"{k}={v}" for k, v in env.items()), *cmd])


class Session:
    """One `ftagent` in its own tmux session; knows the program's pid."""

    def __init__(self, name: str, runs_dir: Path, home: Path, tmp: Path) -> None:
        self.name, self.pid_file = name, tmp / f"{name}.pid"
        line = f"echo $$ > {shlex.quote(str(self.pid_file))}; exec {program(runs_dir, home)}"
        tmux("new-session", "-d", "-s", name, "-x", "120", "-y", "40", "-c", str(ROOT),
             "bash", "-c", line)
        # A tmux server started earlier may size new windows its own way: ask again.
        subprocess.run(["tmux", "resize-window", "-t", name, "-x", "120", "-y", "40"],
                       capture_output=True)

    @property
    def pid(self) -> int:
        return int(self.pid_file.read_text().strip())

    def type(self, text: str) -> None:
        time.sleep(0.3)  # as a person would: the field that gets the text has focus by then
        tmux("send-keys", "-t", self.name, "-l", text)
        tmux("send-keys", "-t", self.name, "Enter")

    def keys(self, *keys: str) -> None:
        time.sleep(0.3)  # a dialog just drawn binds its keys once it has focus
        tmux("send-keys", "-t", self.name, *keys)

    def wait(self, text: str, timeout: float) -> float | None:
        return wait_for(self.name, text, timeout)

    def gone(self, timeout: float = 5) -> bool:
        pid = self.pid
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                return True
            time.sleep(0.02)
        return False

    def close(self) -> None:
        subprocess.run(["tmux", "kill-session", "-t", self.name], capture_output=True)


def check(what: str, ok: bool, session: Session | None = None) -> bool:
    print(f"{what}: {'yes' if ok else 'no'}")
    if not ok and session is not None:
        print(pane(session.name))
    return ok


def help_and_quit(runs_dir: Path, home: Path, tmp: Path, keep: bool) -> bool:
    s = Session(f"ftagent-{os.getpid()}", runs_dir, home, tmp)
    try:
        first = s.wait(FIRST_SCREEN, 20)
        print("first screen: " + (f"{first:.2f} s" if first is not None else "not seen"))
        ok = first is not None
        s.type("/help")
        ok &= check("help shown", s.wait(HELP_TEXT, 10) is not None, s)
        s.type("/quit")
        ok &= check("exited", s.gone())
        return ok
    finally:
        if not keep:
            s.close()


def quit_mid_run_and_resume(runs_dir: Path, home: Path, tmp: Path, data: Path,
                            model: str | None, keep: bool) -> bool:
    s = Session(f"ftagent-{os.getpid()}-run", runs_dir, home, tmp)
    try:
        s.wait(FIRST_SCREEN, 20)
        s.type(f'/workflow:fine-tuning "support assistant" --data {data}'
               + (f" --model {model}" if model else "") + " --max-attempts 1")
        for gate in ("strategy", "dataset"):
            if not check(f"gate {gate} shown", s.wait(f"Gate: {gate}", 180) is not None, s):
                return False
            s.keys("a")
        if not check("training started", s.wait("Training (attempt", 180) is not None, s):
            return False
        started = time.perf_counter()
        s.keys("C-q")
        ok = check("quit mid-training ended the process at once", s.gone(10))
        print(f"  ({time.perf_counter() - started:.2f} s)")
    finally:
        if not keep:
            s.close()
    again = Session(f"ftagent-{os.getpid()}-again", runs_dir, home, tmp)
    try:
        ok &= check("resume offered", again.wait("Resume a run?", 20) is not None, again)
        again.keys("y")
        ok &= check("resumed to the training gate",
                    again.wait("Gate: training", 300) is not None, again)
        again.keys("r")
        again.type("screen check only")
        ok &= check("rejected", again.wait("Run rejected", 60) is not None, again)
        again.type("/quit")
        ok &= check("exited", again.gone())
        return ok
    finally:
        if not keep:
            again.close()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs-dir", type=Path, default=None)
    ap.add_argument("--data", type=Path, default=None, help="also quit mid-run and resume")
    ap.add_argument("--model", default=None)
    ap.add_argument("--home", type=Path, default=None, help="FTAGENT_HOME (default: a temp dir)")
    ap.add_argument("--keep", action="store_true", help="leave the tmux sessions open")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="ftagent-tmux-"))
    runs_dir, home = args.runs_dir or tmp / "runs", args.home or tmp / "home"
    ok = help_and_quit(runs_dir, home, tmp, args.keep)
    if args.data:
        ok &= quit_mid_run_and_resume(runs_dir, home, tmp, args.data.resolve(), args.model,
                                      args.keep)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
