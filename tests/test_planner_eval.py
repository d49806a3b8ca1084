"""The planner against evals/planner/scenarios.yaml: every scenario's inputs are valid,
and the planner decides each one as the engineer wrote it. Pure logic, no model."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # `evals` is not an installed package
    sys.path.insert(0, str(ROOT))

from evals.planner.__main__ import load_scenarios, run_scenarios  # noqa: E402


def test_scenarios_are_valid():
    scenarios = load_scenarios()
    assert len(scenarios) >= 32
    assert all(s.expect for s in scenarios)


def test_every_scenario_decided_as_the_engineer_would():
    results = run_scenarios()
    details = [
        f"{s.id}: "
        + (
            s.error
            or "; ".join(f"{m.field} expected {m.expected!r} got {m.got!r}" for m in s.mismatches)
        )
        for s in results.scenarios
        if not s.ok
    ]
    if details:
        pytest.fail(f"{len(details)} failing scenarios:\n" + "\n".join(details), pytrace=False)
