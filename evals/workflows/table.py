"""The one Markdown table of `python -m evals.workflows`: a row per dataset."""

from __future__ import annotations

from ftagent.agent.graph.gates import GATES

COLUMNS = ["dataset", "rows used", "ended", "why", "tester attempts",
           *(f"{g} gate" for g in GATES), "wall", "peak RSS"]


def cell(text) -> str:
    """Safe inside a Markdown table cell: no pipes or line breaks."""
    return " ".join(str(text).split()).replace("|", "\\|")


def gate_cell(gate: dict | None) -> str:
    """'pass → approve: numbers', 'FAIL (waiting): numbers', or '–' (not reached)."""
    if not gate:
        return "–"
    verdict = "pass" if gate.get("passed") else "FAIL"
    decided = f" → {gate['decision']}" if gate.get("decision") else " (no decision)"
    times = f" ×{gate['times']}" if gate.get("times", 1) > 1 else ""
    return f"{verdict}{decided}{times}: {gate.get('numbers', '')}"


def minutes(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds / 60:.1f} min"


def markdown_table(rows: list[dict]) -> str:
    lines = ["| " + " | ".join(COLUMNS) + " |", "|" + "---|" * len(COLUMNS)]
    for r in rows:
        gates = r.get("gates") or {}
        peak = r.get("peak_rss_mb")
        values = [r["dataset"], f"{r['rows']} ({r['rule']})", r["ended"], r["why"] or "–",
                  " / ".join(r.get("attempts") or []) or "–",
                  *(gate_cell(gates.get(g)) for g in GATES), minutes(r.get("wall_s")),
                  "-" if peak is None else f"{peak / 1024:.1f} GiB"]
        lines.append("| " + " | ".join(cell(v) for v in values) + " |")
    return "\n".join(lines)
