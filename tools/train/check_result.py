"""What a pre-flight check reports: one `Check` per finding and the report that holds
them. Apart from the checks themselves so every group of checks (environment, capacity,
files) builds its findings the same way."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, computed_field

Severity = Literal["error", "warning", "info"]


class Check(BaseModel):
    """One finding. Passing checks have severity "info"; a failing one is an error (the
    run would fail or be wrong) or a warning (it would run, but slowly or untested)."""

    name: str
    ok: bool
    severity: Severity = "info"
    detail: str
    fix: str = ""


class PreflightReport(BaseModel):
    checks: list[Check]

    @computed_field
    @property
    def ok(self) -> bool:
        """True when nothing would stop training; warnings do not."""
        return not self.errors

    @property
    def errors(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and c.severity == "error"]

    @property
    def warnings(self) -> list[Check]:
        return [c for c in self.checks if not c.ok and c.severity == "warning"]

    def get(self, name: str) -> Check | None:
        return next((c for c in self.checks if c.name == name), None)


def passed(name: str, detail: str) -> Check:
    """A passing check is shown too, so a person sees what was verified."""
    return Check(name=name, ok=True, severity="info", detail=detail)


def failed(name: str, severity: Severity, detail: str, fix: str) -> Check:
    """A failing check always carries its fix: a finding without one leaves people stuck."""
    return Check(name=name, ok=False, severity=severity, detail=detail, fix=fix)
