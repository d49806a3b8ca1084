"""Run the planner on every scenario in scenarios.yaml and compare its decisions with
what a careful senior fine-tuning engineer would decide.

    python -m evals.planner [SCENARIOS.yaml] [--check] [--only ID ...]

Prints accuracy per decision field, then each failing scenario with the planner's reasons;
exits 1 unless every scenario is right (2 when the scenario file itself is invalid).
`--check` only builds every scenario's inputs (no planner call).
"""

from __future__ import annotations

import argparse
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

SCENARIOS = Path(__file__).with_name("scenarios.yaml")

# Plan fields a scenario may expect, in the order the accuracy table shows them.
PLAN_FIELDS = (
    "task_type",
    "prompting_first",
    "method",
    "adapter",
    "objective",
    "model",
    "strategy",
    "n_devices",
    "fits",
    "precision",
)
SIZE_FIELDS = ("min_params_b", "max_params_b")  # bounds on the chosen model's size
LENGTH_FIELD = "max_length_at_least"  # the training sequence length must cover this
# substrings in these lists (risks: text and mitigation)
TEXT_FIELDS = {"mentions": "reasons", "warns": "warnings", "risks": "risks"}
EXPECT_KEYS = (*PLAN_FIELDS, *SIZE_FIELDS, LENGTH_FIELD, *TEXT_FIELDS)
SCENARIO_KEYS = {
    "id",
    "why",
    "goal",
    "data",
    "hardware",
    "constraints",
    "model",
    "feedback",
    "local_ids",
    "expect",
}


@dataclass
class Scenario:
    id: str
    why: str
    inputs: Any  # PlanInputs
    expect: dict


@dataclass
class Mismatch:
    field: str
    expected: Any
    got: Any


@dataclass
class ScenarioResult:
    id: str
    why: str
    checked: list[str]  # expectation keys compared
    mismatches: list[Mismatch] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    summary: str = ""  # the plan's decisions in one line
    error: str | None = None  # the planner raised

    @property
    def ok(self) -> bool:
        return self.error is None and not self.mismatches


@dataclass
class Results:
    scenarios: list[ScenarioResult]

    @property
    def ok(self) -> bool:
        return all(s.ok for s in self.scenarios)

    @property
    def failing(self) -> list[str]:
        return [s.id for s in self.scenarios if not s.ok]

    def per_field(self) -> dict[str, tuple[int, int]]:
        """Expectation key -> (right, checked); a planner error counts as wrong."""
        counts: dict[str, tuple[int, int]] = {}
        for key in EXPECT_KEYS:
            right = checked = 0
            for s in self.scenarios:
                if key in s.checked:
                    checked += 1
                    wrong = s.error is not None or any(m.field == key for m in s.mismatches)
                    right += not wrong
            if checked:
                counts[key] = (right, checked)
        return counts


class ScenarioError(ValueError):
    """The scenario file is wrong (not the planner)."""


def load_scenarios(path: str | Path = SCENARIOS) -> list[Scenario]:
    """Every scenario with its PlanInputs built (pydantic-validated) and its expected
    model ids checked against the registry."""
    from ftagent.tools.data.facts import DataFacts
    from ftagent.tools.hardware import Hardware
    from ftagent.tools.plan.types import Constraints, PlanInputs
    from ftagent.tools.registry import lookup

    doc = yaml.safe_load(Path(path).read_text())
    scenarios, seen = [], set()
    for i, raw in enumerate(doc.get("scenarios") or []):
        sid = raw.get("id") or f"#{i}"
        where = f"scenario {sid}"
        if sid in seen:
            raise ScenarioError(f"{where}: duplicate id")
        seen.add(sid)
        unknown = set(raw) - SCENARIO_KEYS
        if unknown:
            raise ScenarioError(f"{where}: unknown keys {sorted(unknown)}")
        if not raw.get("why") or not raw.get("expect"):
            raise ScenarioError(f"{where}: needs `why` and `expect`")
        expect = raw["expect"]
        bad = set(expect) - set(EXPECT_KEYS)
        if bad:
            raise ScenarioError(f"{where}: unknown expectations {sorted(bad)}")
        for model_id in _as_list(expect.get("model")):
            if lookup(model_id) is None or lookup(model_id).id != model_id:
                raise ScenarioError(f"{where}: expected model {model_id!r} is not a registry id")
        fixed = None
        if raw.get("model"):
            fixed = lookup(raw["model"])
            if fixed is None:
                raise ScenarioError(f"{where}: fixed model {raw['model']!r} is not in the registry")
        try:
            inputs = PlanInputs(
                goal=raw["goal"],
                data=DataFacts(**raw["data"]),
                hardware=Hardware(**raw["hardware"]),
                constraints=Constraints(**(raw.get("constraints") or {})),
                model=fixed,
                local_ids=raw.get("local_ids") or [],
                feedback=raw.get("feedback") or [],
            )
        except (KeyError, TypeError, ValueError) as e:
            raise ScenarioError(f"{where}: {e}") from e
        scenarios.append(
            Scenario(id=sid, why=" ".join(raw["why"].split()), inputs=inputs, expect=expect)
        )
    if not scenarios:
        raise ScenarioError(f"{path}: no scenarios")
    return scenarios


def _as_list(value: Any) -> list:
    if value is None:
        return []
    return list(value) if isinstance(value, list) else [value]


def _text_ok(wanted: str | list[str], texts: list[str]) -> bool:
    """One `mentions`/`warns` entry: a substring, or a list of alternatives."""
    blob = "\n".join(texts).lower()
    return any(alt.lower() in blob for alt in _as_list(wanted))


def compare(expect: dict, plan: Any) -> list[Mismatch]:
    out = []
    for key in PLAN_FIELDS:
        if key in expect:
            got = getattr(plan, key)
            if got not in _as_list(expect[key]):
                out.append(Mismatch(key, expect[key], got))
    size = plan.model_card.params_b
    if "max_params_b" in expect and size > expect["max_params_b"]:
        out.append(Mismatch("max_params_b", f"<= {expect['max_params_b']}B", f"{size}B"))
    if "min_params_b" in expect and size < expect["min_params_b"]:
        out.append(Mismatch("min_params_b", f">= {expect['min_params_b']}B", f"{size}B"))
    if LENGTH_FIELD in expect and plan.training.max_length < expect[LENGTH_FIELD]:
        out.append(Mismatch(LENGTH_FIELD, f">= {expect[LENGTH_FIELD]}", plan.training.max_length))
    for key, attr in TEXT_FIELDS.items():
        texts = [t if isinstance(t, str) else f"{t.text} {t.detail}" for t in getattr(plan, attr)]
        missing = [w for w in expect.get(key, []) if not _text_ok(w, texts)]
        if missing:
            out.append(Mismatch(key, missing, f"not in the plan's {attr}"))
    return out


def summarise(plan: Any) -> str:
    return (
        f"{plan.task_type}, prompting_first={plan.prompting_first}, {plan.method} "
        f"({plan.adapter}/{plan.objective}) on {plan.model} ({plan.model_card.params_b}B), "
        f"{plan.strategy} x{plan.n_devices}, {plan.precision}, "
        f"max_length={plan.training.max_length}, fits={plan.fits}"
    )


def run_one(scenario: Scenario) -> ScenarioResult:
    from ftagent.tools.plan.rules import make_plan

    result = ScenarioResult(scenario.id, scenario.why, checked=list(scenario.expect))
    try:
        plan = make_plan(scenario.inputs)
    except Exception as e:  # noqa: BLE001 - a crash is a failed scenario, reported as such
        result.error = f"{type(e).__name__}: {e}"
        return result
    result.mismatches = compare(scenario.expect, plan)
    result.reasons, result.warnings = list(plan.reasons), list(plan.warnings)
    result.summary = summarise(plan)
    return result


def run_scenarios(path: str | Path = SCENARIOS, only: list[str] | None = None) -> Results:
    scenarios = load_scenarios(path)
    if only:
        scenarios = [s for s in scenarios if s.id in only]
    return Results([run_one(s) for s in scenarios])


def report(results: Results) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console()
    table = Table(title=f"Planner decisions on {len(results.scenarios)} scenarios")
    table.add_column("field")
    table.add_column("right", justify="right")
    table.add_column("checked", justify="right")
    table.add_column("accuracy", justify="right")
    for key, (right, checked) in results.per_field().items():
        style = "green" if right == checked else "red"
        table.add_row(key, str(right), str(checked), f"[{style}]{right / checked:.0%}[/]")
    n_ok = sum(s.ok for s in results.scenarios)
    n = len(results.scenarios)
    table.add_section()
    table.add_row("[b]whole scenario[/]", str(n_ok), str(n), f"[b]{n_ok / n:.0%}[/]")
    console.print(table)
    for s in results.scenarios:
        if s.ok:
            continue
        console.rule(f"[red]{s.id}")
        console.print(f"[dim]engineer:[/] {s.why}", highlight=False)
        if s.error:
            console.print(f"[red]planner raised[/] {s.error}", highlight=False)
            continue
        console.print(f"[dim]planner:[/]  {s.summary}", highlight=False)
        for m in s.mismatches:
            console.print(
                f"  [red]✗ {m.field}[/]: expected {m.expected!r}, got {m.got!r}", highlight=False
            )
        console.print("[dim]reasons:[/]")
        for r in s.reasons:
            console.print(f"  - {r}", highlight=False, markup=False)
        for w in s.warnings:
            console.print(f"  ! {w}", highlight=False, markup=False)
    verdict = (
        "[green]all scenarios right[/]"
        if results.ok
        else (f"[red]{len(results.failing)} failing:[/] {', '.join(results.failing)}")
    )
    console.print(verdict)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m evals.planner", description=__doc__)
    parser.add_argument("path", nargs="?", default=str(SCENARIOS))
    parser.add_argument("--check", action="store_true", help="only build the inputs")
    parser.add_argument("--only", nargs="+", metavar="ID", help="run these scenarios only")
    args = parser.parse_args(argv)
    try:
        if args.check:
            scenarios = load_scenarios(args.path)
            print(f"{len(scenarios)} scenarios, every input valid")
            return 0
        results = run_scenarios(args.path, args.only)
    except ScenarioError as e:
        print(f"invalid scenario file: {e}", file=sys.stderr)
        return 2
    report(results)
    return 0 if results.ok else 1


if __name__ == "__main__":
    sys.exit(main())
