"""One run folder -> one row of the table: where the run ended, why, and every gate's verdict
with its numbers. Everything but `read_run` is a pure function of the manifest and events.

Event shapes (agent/service/session.py): `gate_waiting` carries the gate's GateRequest (gate,
passed, summary, evidence); `gate_decision` the decision (gate, action, reason);
`node_started` / `node_finished` the node; `run_waiting` / `run_finished` / `run_failed`
the end. The evaluation gate's evidence["targets"] is tools/evaluate/verdict.py's per-target table.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from ftagent.agent.graph.gates import GATES

SAFETY_METRICS = ("refusal_rate", "over_refusal_rate")


def read_run(run_dir: Path) -> tuple[dict | None, list[dict]]:
    """The manifest (None when no run folder was made) and the events of a run folder."""
    from ftagent.agent.service.runs import read_events

    run_dir = Path(run_dir)
    path = run_dir / "manifest.json"
    manifest = json.loads(path.read_text(encoding="utf-8")) if path.exists() else None
    return manifest, read_events(run_dir)


def one_line(text: str, limit: int = 0) -> str:
    """Text without Markdown table lines and line breaks, cut to `limit` characters."""
    kept = [ln.strip() for ln in str(text).splitlines() if not ln.lstrip().startswith("|")]
    flat = re.sub(r"\s+", " ", " ".join(kept)).strip()
    return flat if not limit or len(flat) <= limit else flat[: limit - 1].rstrip() + "…"


def _num(v) -> str:
    return "-" if v is None else f"{v:.3f}"


def metric_text(row: dict) -> str:
    """'accuracy 0.125→0.500 met' from a verdict TargetRow dict."""
    from ftagent.tools.evaluate.verdict import TargetRow

    r = TargetRow.model_validate(row)
    return f"{r.metric} {_num(r.base)}→{_num(r.tuned)} {r.mark()}"


def gate_numbers(gate: str, request: dict) -> str:
    """The numbers a reader needs from one gate's request."""
    ev = request.get("evidence") or {}
    if gate == "strategy":
        text = (f"{str(ev.get('method', '?')).upper()} {str(ev.get('model', '?')).split('/')[-1]}"
                f", {ev.get('memory_gb')}/{ev.get('usable_gb')} GB")
        return text + (", prompting first" if ev.get("prompting_first") else "")
    if gate == "dataset":
        splits = " / ".join(f"{k} {v}" for k, v in (ev.get("splits") or {}).items())
        errors = ev.get("errors") or []
        return splits + (f"; errors: {', '.join(errors)}" if errors else "")
    if gate == "training":  # its summary's first line: steps, seconds, losses
        return request.get("summary", "").splitlines()[0] if request.get("summary") else ""
    targets = ev.get("targets") or []
    if gate == "evaluation":
        shown = [metric_text(r) for r in targets
                 if r.get("kind") in ("target", "guard") and r["metric"] not in SAFETY_METRICS]
        attempt = f"attempt {ev.get('attempt')}/{ev.get('max_attempts')}"
        return "; ".join([*shown, attempt])
    if gate == "deployment":  # seconds: per step; gguf: the export's report (or empty)
        g = ev.get("gguf") or {}
        parts = [f"{sum((ev.get('seconds') or {}).values()):.0f} s",
                 f"GGUF {g.get('quant')} {g.get('size_bytes', 0) / 2**20:.0f} MiB" if g
                 else "no GGUF"]
        return "; ".join(parts + [f"problems: {p}" for p in ev.get("problems") or []])
    return ""


def gate_cells(events: list[dict]) -> dict[str, dict]:
    """Per gate (in workflow order): passed, decision, numbers and how often it was met."""
    out: dict[str, dict] = {}
    eval_targets: list[dict] = []
    for e in events:
        if e.get("type") == "gate_waiting":
            gate = e["gate"]
            seen = out.get(gate, {}).get("times", 0)
            out[gate] = {"passed": e.get("passed"), "decision": None, "times": seen + 1,
                         "numbers": gate_numbers(gate, e), "summary": e.get("summary", "")}
            if gate == "evaluation":
                eval_targets = (e.get("evidence") or {}).get("targets") or []
        elif e.get("type") == "gate_decision" and e.get("gate") in out:
            out[e["gate"]]["decision"] = e.get("action")
            out[e["gate"]]["reason"] = e.get("reason", "")
    if "safety" in out:  # the refusal guards are the safety gate's numbers
        out["safety"]["numbers"] = "; ".join(
            metric_text(r) for r in eval_targets if r["metric"] in SAFETY_METRICS)
    if "evaluation" in out:
        out["evaluation"]["targets"] = eval_targets
    return {g: out[g] for g in GATES if g in out}


def _open_node(events: list[dict]) -> str | None:
    """The node that started last and did not finish."""
    open_nodes: list[str] = []
    for e in events:
        if e.get("type") == "node_started":
            open_nodes.append(e["node"])
        elif e.get("type") == "node_finished" and e.get("node") in open_nodes:
            open_nodes.remove(e["node"])
    return open_nodes[-1] if open_nodes else None


def where_it_ended(manifest: dict | None, events: list[dict], gates: dict[str, dict], *,
                   timed_out: bool = False, timeout_s: float | None = None,
                   exit_code: int | None = None, log_tail: str = "") -> tuple[str, str]:
    """(ended, why): 'waiting at evaluation' and the failed check, 'failed in trainer' and
    the error, 'done', 'timeout in tester', or 'no run' with the CLI's error."""
    if manifest is None:
        errors = [ln for ln in log_tail.splitlines() if ln.startswith("error:")]
        return f"no run (exit {exit_code})", one_line((errors or [log_tail])[-1], 300)
    if timed_out:
        return (f"timeout in {_open_node(events) or 'between nodes'}",
                f"killed after {timeout_s:g} s (--timeout)")
    last = next((e for e in reversed(events)
                 if e.get("type") in ("run_waiting", "run_finished", "run_failed")), {})
    kind = last.get("type")
    if kind == "run_waiting":
        gate = last["gate"]
        summary = gates.get(gate, {}).get("summary", "")
        why = ("check passed" if gates.get(gate, {}).get("passed") else "check failed") + (
            f" (unmet policy rule: {last['unmet']})" if last.get("unmet") else "")
        return f"waiting at {gate}", f"{why}: " + one_line(summary, 400)
    if kind == "run_failed":
        return f"failed in {_open_node(events) or '?'}", one_line(last.get("error", ""), 400)
    if kind == "run_finished":
        status = last.get("status", "?")
        if status == "rejected":
            gate, cell = next(((g, c) for g, c in reversed(gates.items())
                               if c.get("decision") == "reject"), ("?", {}))
            return f"rejected at {gate}", one_line(cell.get("reason", ""), 300)
        return status, ""
    return manifest.get("status", "?"), f"the run stopped without an end event (exit {exit_code})"


def tester_attempts(events: list[dict]) -> list[str]:
    """Each evaluation attempt, as the tester judged it before any gate: '1: accuracy: base
    0.026 -> tuned 0.351 (...); ... Targets missed. -> below_target'. A run that loops back
    to retrain (or times out doing so) still shows what each attempt scored."""
    out = []
    for e in events:
        if e.get("type") == "node_finished" and e.get("node") == "tester":
            first = one_line(str(e.get("summary", "")).split("\n\n")[0], 300)
            found = ", ".join(e.get("diagnoses") or [])
            out.append(f"{e.get('attempt', '?')}: {first}" + (f" -> {found}" if found else ""))
    return out


def run_row(manifest: dict | None, events: list[dict], **end) -> dict:
    """Everything the table and results.json need from one run."""
    gates = gate_cells(events)
    ended, why = where_it_ended(manifest, events, gates, **end)
    return {"ended": ended, "why": why, "gates": gates, "attempts": tester_attempts(events),
            "run_id": (manifest or {}).get("run_id")}
