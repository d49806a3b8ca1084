"""Policy files: a person's written rules for deciding gates in headless runs.

`ftagent run --policy policy.yaml` decides each gate the file names by conditions on that
gate's evidence; a gate whose conditions do not hold (or that the file does not name)
waits for a person, and the outcome names the unmet condition. Every decision it makes is
recorded with the file's path and the rule that made it.

    # policy.yaml
    strategy: passed              # approve when the gate's automatic check passed
    dataset: passed
    training: passed
    evaluation:
      when:
        - accuracy >= 0.85        # the tuned model's score
        - arc_easy_drop <= 2      # ARC-Easy points lost against the base
    safety:
      when: [harmful_refusal >= 0.5]
    deployment: passed

A gate's value is `passed`, `always` (approve whatever the check says: you looked), `wait`
(a person decides), or a mapping with `when:` (a list of conditions, all must hold).
A condition is `passed` or `NAME OP NUMBER` with OP one of >= <= > < == !=. The names
a gate offers are listed by `gate_numbers` (and in the error when a name is unknown).
"""

from __future__ import annotations

import operator
import re
from pathlib import Path

from ftagent.agent.graph.gates import GATES, GateDecision, GateRequest
from pydantic import BaseModel, Field

OPS = {">=": operator.ge, "<=": operator.le, ">": operator.gt, "<": operator.lt,
       "==": operator.eq, "!=": operator.ne}
_CONDITION = re.compile(r"^\s*([a-z_][\w.]*)\s*(>=|<=|==|!=|>|<)\s*(-?\d+(?:\.\d*)?(?:e-?\d+)?)"
                        r"\s*$", re.IGNORECASE)
# Friendlier names for the tuned model's scores, as a person writes them.
ALIASES = {"refusal_rate": "harmful_refusal", "over_refusal_rate": "over_refusal",
           "arc_accuracy": "arc_easy"}


class PolicyError(ValueError):
    """A policy file that cannot be used: file, line and field named."""


class Condition(BaseModel):
    text: str
    name: str
    op: str = ""
    value: float = 0.0

    def check(self, request: GateRequest, numbers: dict[str, float]) -> tuple[bool, str]:
        """(holds, what was seen) for this gate's evidence."""
        if self.name == "passed":
            return request.passed, f"automatic check {'passed' if request.passed else 'failed'}"
        if self.name not in numbers:
            known = ", ".join(sorted(numbers)) or "none"
            return False, f"the {request.gate} gate has no number '{self.name}' (it has: {known})"
        seen = numbers[self.name]
        return OPS[self.op](seen, self.value), f"{self.name} is {seen:.4g}"


class GateRule(BaseModel):
    mode: str  # passed | always | wait | when
    when: list[Condition] = Field(default_factory=list)
    where: str = ""  # "FILE, line N" for messages


class PolicyFile(BaseModel):
    """The parsed file; `decide` is called by agent.service.session.drive like any policy."""

    path: str
    rules: dict[str, GateRule]
    unmet: str = ""  # why the last gate was left for a person, for the outcome

    def decide(self, request: GateRequest) -> GateDecision | None:
        rule = self.rules.get(request.gate)
        self.unmet = ""
        if rule is None or rule.mode == "wait":
            self.unmet = (f"{self.path} leaves the {request.gate} gate to a person"
                          if rule is None else f"{rule.where}: {request.gate}: wait")
            return None
        conditions = rule.when or ([Condition(text="passed", name="passed")]
                                   if rule.mode == "passed" else [])
        numbers = gate_numbers(request)
        seen = []
        for c in conditions:
            ok, what = c.check(request, numbers)
            if not ok:
                self.unmet = f"{rule.where}: {request.gate}: '{c.text}' not met ({what})"
                return None
            seen.append(f"{c.text} ({what})")
        detail = f"{rule.where}: {request.gate}: " + (
            "; ".join(seen) if seen else "always approve")
        return GateDecision(action="approve", gate=request.gate, source="policy",
                            detail=detail, reason=f"policy {self.path}")


def gate_numbers(request: GateRequest) -> dict[str, float]:
    """The numbers a policy can test at a gate: numeric evidence (nested ones dotted), and
    at the evaluation and safety gates every metric's tuned value (`accuracy`), its base
    (`accuracy_base`) and change (`accuracy_change`), plus `arc_easy_drop` in points."""
    out: dict[str, float] = {}

    def add(prefix: str, value) -> None:
        if isinstance(value, bool):
            return
        if isinstance(value, int | float):
            out[prefix] = float(value)
        elif isinstance(value, dict):
            for k, v in value.items():
                add(f"{prefix}.{k}" if prefix else str(k), v)

    ev = request.evidence
    add("", {k: v for k, v in ev.items() if k not in ("targets", "scores")})
    rows = list(ev.get("targets") or []) if isinstance(ev.get("targets"), list) else []
    scores = ev.get("scores") or {}
    rows += [{"metric": m, "base": (scores.get("base") or {}).get(m),
              "tuned": (scores.get("tuned") or {}).get(m)} for m in scores.get("tuned") or {}]
    for row in rows:
        for name in {row["metric"], ALIASES.get(row["metric"], row["metric"])}:
            if row.get("tuned") is not None:
                out[name] = float(row["tuned"])
            if row.get("base") is not None:
                out[f"{name}_base"] = float(row["base"])
            if row.get("tuned") is not None and row.get("base") is not None:
                out[f"{name}_change"] = float(row["tuned"]) - float(row["base"])
    if "arc_easy" in out and "arc_easy_base" in out:
        out["arc_easy_drop"] = round((out["arc_easy_base"] - out["arc_easy"]) * 100, 6)
    return out


def _line_of(text: str, needle: str, start: int = 0) -> int:
    at = text.find(needle, start)
    return text.count("\n", 0, at) + 1 if at >= 0 else 0


def load_policy(path: str | Path) -> PolicyFile:
    """Read and check a policy file; PolicyError names the file, line and field."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(f"{path}: cannot read the policy file ({exc.strerror})") from None
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = f", line {mark.line + 1}" if mark else ""
        raise PolicyError(f"{path}{line}: not valid YAML: {getattr(exc, 'problem', exc)}") \
            from None
    if not isinstance(data, dict):
        raise PolicyError(f"{path}: expected one `gate: rule` a line (a mapping), e.g. "
                          "`evaluation: {when: [accuracy >= 0.85]}`")
    rules: dict[str, GateRule] = {}
    for gate, value in data.items():
        line = _line_of(text, f"{gate}:")
        where = f"{path}, line {line}"
        if gate not in GATES:
            raise PolicyError(f"{where}: unknown gate '{gate}'; gates are: {', '.join(GATES)}")
        rules[gate] = _rule(gate, value, where, text, line)
    return PolicyFile(path=str(path), rules=rules)


def _rule(gate: str, value, where: str, text: str, line: int) -> GateRule:
    modes = ("passed", "always", "wait")
    if isinstance(value, str):
        if value not in modes:
            raise PolicyError(f"{where}, field {gate}: '{value}' is not a rule; use one of "
                              f"{', '.join(modes)} or `when: [conditions]`")
        return GateRule(mode=value, where=where)
    if not isinstance(value, dict) or set(value) != {"when"}:
        raise PolicyError(f"{where}, field {gate}: expected passed, always, wait or a "
                          "mapping with one key `when:` (a list of conditions)")
    items = value["when"]
    items = [items] if isinstance(items, str) else items
    if not isinstance(items, list) or not items:
        raise PolicyError(f"{where}, field {gate}.when: give a list of conditions, e.g. "
                          "[accuracy >= 0.85]")
    conditions = []
    for i, raw in enumerate(items):
        raw = str(raw)
        at = f"{where.rsplit(', line', 1)[0]}, line {_line_of(text, raw, 0) or line}"
        if raw.strip() == "passed":
            conditions.append(Condition(text="passed", name="passed"))
            continue
        m = _CONDITION.match(raw)
        if not m:
            raise PolicyError(f"{at}, field {gate}.when[{i}]: cannot read '{raw}'; write "
                              "NAME OP NUMBER (OP: >= <= > < == !=), e.g. accuracy >= 0.85")
        conditions.append(Condition(text=raw.strip(), name=m.group(1), op=m.group(2),
                                    value=float(m.group(3))))
    return GateRule(mode="when", when=conditions, where=where)
