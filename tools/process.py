"""Is a process still there? One answer for the run registry and the training job."""

from __future__ import annotations

import os


def alive(pid: int | None) -> bool:
    """True while `pid` runs. A zombie child of this process counts as gone (it has
    exited; only its exit status waits to be read), and a pid that is not our child
    counts as alive when the kernel still knows it."""
    if not pid:
        return False
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        return os.waitpid(pid, os.WNOHANG) == (0, 0)
    except ChildProcessError:
        return True
