"""One job's workflow run, driven headless in its own process:

    python -m ftagent.agent.service.fine_tuning.worker RUN_DIR OUTCOME_JSON [POLICY_FILE]

Why a process: the server stays responsive while the workflow plans, prepares data,
evaluates and merges (the training itself is already a process of its own), and a cancel
is a signal, not a flag some node must remember to check. SIGTERM ends the drive the way
Ctrl-C ends `ftagent run`: the trainer is stopped at its last checkpoint and the run can
be resumed, which is what a restarted server does. Gates are decided by the operator's
policy file, else approved when their automatic check passed (`--approve all`). Where
the drive stopped is written to OUTCOME_JSON for the job manager.
"""

from __future__ import annotations

import signal
import sys
from pathlib import Path


def _stop(signum, _frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")  # unwinds like Ctrl-C: the trainer stops


def main(argv: list[str]) -> int:
    from ftagent.agent.service.policy import load_policy
    from ftagent.agent.service.runs import STATE_DB
    from ftagent.agent.service.session import ApprovalPolicy, drive, initial_state
    from ftagent.tools.atomic import write_json

    signal.signal(signal.SIGTERM, _stop)
    run_dir, outcome_path = Path(argv[0]), Path(argv[1])
    policy = load_policy(argv[2]) if len(argv) > 2 else ApprovalPolicy(approve_all=True)
    fresh = not (run_dir / STATE_DB).exists()
    outcome = drive(run_dir, policy, initial_state(run_dir) if fresh else None)
    decisions = outcome.values.get("decisions") or {}
    write_json(outcome_path, {
        "status": outcome.status, "gate": outcome.gate, "error": outcome.error,
        "unmet": outcome.unmet, "decisions": decisions,
        "train_result": outcome.values.get("train_result"),
        "deployment": {k: v for k, v in (outcome.values.get("deployment") or {}).items()
                       if k in ("adapter", "merged")},
    })
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
