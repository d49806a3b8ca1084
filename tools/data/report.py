"""The data report: JSON for machines (pydantic), markdown for people."""

from __future__ import annotations

from ftagent.tools.data.checks import CHECKS, ERROR
from pydantic import BaseModel, Field

MAX_EXAMPLES = 5


class CheckResult(BaseModel):
    name: str
    severity: str
    count: int
    examples: list[str] = Field(default_factory=list, description="'file:row field' samples")
    action: str


class DataReport(BaseModel):
    source: str
    sha256: str
    schema_name: str
    schema_detail: str
    kind: str  # chat | preference | classification | prompts
    column_mapping: dict[str, str] = {}
    schema_votes: dict[str, int] = {}
    rows_read: int
    examples_converted: int
    kept: int
    checks: list[CheckResult]
    task_type: str
    labels: list[str] = []
    label_counts: dict[str, int] = {}
    max_length: int | None = None
    token_lengths: dict[str, int] = {}
    token_histogram: list[tuple[int, int, int]] = []
    preview: list[dict] = []
    splits: dict[str, int] = {}
    split_paths: dict[str, str] = {}
    split_sha256: dict[str, str] = {}
    seed: int = 42
    warnings: list[str] = []
    safety_mix: dict | None = None  # tools.data.safety_mix.MixReport, when rows were added

    @property
    def errors(self) -> list[CheckResult]:
        return [c for c in self.checks if c.severity == ERROR and c.count]

    @property
    def passed(self) -> bool:
        """Errors block the dataset gate unless a person overrides it."""
        return not self.errors and self.kept > 0


class Tally:
    """Counts findings per check, keeping a few examples of each."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.examples: dict[str, list[str]] = {}

    def add(self, check: str, where: str) -> None:
        self.counts[check] = self.counts.get(check, 0) + 1
        ex = self.examples.setdefault(check, [])
        if len(ex) < MAX_EXAMPLES:
            ex.append(where)

    def merge(self, counts: dict[str, int], examples: dict[str, list[str]]) -> None:
        """Add another tally's findings; parts arrive in input order."""
        for check, n in counts.items():
            self.counts[check] = self.counts.get(check, 0) + n
            mine = self.examples.setdefault(check, [])
            mine += examples.get(check, [])[: MAX_EXAMPLES - len(mine)]

    def results(self) -> list[CheckResult]:
        return [
            CheckResult(
                name=name,
                severity=sev,
                count=self.counts.get(name, 0),
                examples=self.examples.get(name, []),
                action=action,
            )
            for name, (sev, action) in CHECKS.items()
        ]


def mix_summary(mix: dict) -> str:
    """One line on the safety mix, for the report and the dataset gate."""
    parts = ", ".join(f"{n} {name}" for name, n in mix["sources"].items())
    line = (f"{mix['rows']} rows added to train only ({mix['harmful']} harmful requests "
            f"answered with refusals, {mix['benign']} benign look-alikes answered by the base "
            f"model; {mix['share']:.0%} of the task's training rows): {parts}")
    return line + (f". {mix['note']}" if mix.get("note") else "")


def to_markdown(r: DataReport) -> str:
    lines = [
        f"# Dataset report: `{r.source}`",
        "",
        f"- sha256: `{r.sha256}`",
        f"- schema: **{r.schema_name}**"
        + (f" (columns: {_mapping(r)})" if r.column_mapping else ""),
        f"- rows read: {r.rows_read}; examples: {r.examples_converted}; kept: **{r.kept}**",
        f"- task type: **{r.task_type}**" + (f", {len(r.labels)} labels" if r.labels else ""),
    ]
    if r.splits:
        lines.append(
            f"- split (seed {r.seed}): " + ", ".join(f"{k} {v}" for k, v in r.splits.items())
        )
    if r.safety_mix:
        lines.append(f"- safety mix: {mix_summary(r.safety_mix)}")
    lines.append(
        f"- verdict: **{'ready' if r.passed else 'needs a decision'}**"
        + (f" ({len(r.errors)} error checks)" if r.errors else "")
    )
    found = [c for c in r.checks if c.count]
    lines += (
        ["", "| check | severity | count | examples | action |", "|---|---|---:|---|---|"]
        if (found)
        else ["", "No problems found."]
    )
    for c in found:
        if c.count:
            lines.append(
                f"| {c.name} | {c.severity} | {c.count} | {'; '.join(c.examples)} | {c.action} |"
            )
    clean = [c.name for c in r.checks if not c.count]
    if clean:
        lines += ["", f"Clean: {', '.join(clean)}."]
    if r.token_lengths:
        lines += [
            "",
            f"## Token lengths (chat template; max length {r.max_length})",
            "",
            "| " + " | ".join(r.token_lengths) + " |",
            "|" + "---:|" * len(r.token_lengths),
            "| " + " | ".join(str(v) for v in r.token_lengths.values()) + " |",
        ]
    if r.label_counts:
        lines += ["", "## Labels", "", "| label | count |", "|---|---:|"]
        lines += [f"| {k} | {v} |" for k, v in sorted(r.label_counts.items(), key=lambda x: -x[1])]
    if r.preview:
        lines += [
            "",
            "## What the model will learn",
            "",
            "Loss is computed on the text after `▶` (the answer); everything before is context.",
        ]
        for p in r.preview:
            lines += [
                "",
                "```",
                p["prompt"] + "▶" + p["loss"],
                "```",
                f"{p['loss_tokens']} of {p['total_tokens']} tokens carry loss.",
            ]
    if r.warnings:
        lines += ["", "## Warnings", *[f"- {w}" for w in r.warnings]]
    return "\n".join(lines) + "\n"


def _mapping(r: DataReport) -> str:
    return ", ".join(f"{k} <- `{v}`" for k, v in r.column_mapping.items())
