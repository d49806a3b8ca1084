"""Markdown for the chat and the gate dialog, read from a run folder and the driver's
events. No Textual here: the widgets only display what these functions return."""

from __future__ import annotations

import json
from pathlib import Path

from ftagent.agent.service.outcome import Outcome, keep_lines, markdown, node_summary

DOC_EVIDENCE = {"strategy": "plan", "dataset": "report", "evaluation": "report",
                "safety": "report"}


def _read(path: str | Path | None) -> str:
    try:
        return Path(path).read_text(encoding="utf-8") if path else ""
    except OSError:
        return ""


def _cell(value) -> str:
    text = f"{value:.4g}" if isinstance(value, float) else str(value)
    return text.replace("|", "\\|").replace("\n", " ")[:120]


def event_line(event: dict) -> str | None:
    """One chat line per driver event worth a line (training progress has its own panel)."""
    kind = event.get("type")
    if kind == "run_started":
        return f"**Run `{event['run_id']}` started.**"
    if kind == "run_resumed":
        return f"**Resuming run `{event['run_id']}`.**"
    if kind == "node_started":
        return f"→ {event['node']}"
    if kind == "node_finished":
        return f"✓ **{event['node']}** {node_summary(event)}".rstrip()
    if kind == "gate_decision":
        why = f" — {event['reason']}" if event.get("reason") else ""
        changes = event.get("changes") or {}
        edit = " with " + ", ".join(f"`{k}={v}`" for k, v in changes.items()) if changes else ""
        return f"◆ gate **{event['gate']}**: {event['action']}{edit}{why}"
    if kind == "run_failed":
        return f"✗ **failed:** {event['error']}"
    if kind == "train_progress" and event.get("event") in ("anomaly", "warning", "recovered"):
        return f"⚠ {event.get('message', '')} {event.get('fix', '')}".strip()
    return None


def gate_markdown(request: dict, run_dir: Path | None = None) -> str:
    """The gate's title, question, check result, summary and evidence (plan.md, the data
    report, the evaluation report, or the deployment check as a table)."""
    gate = request["gate"]
    mark = "passed ✓" if request.get("passed") else "**FAILED** ✗ — look before approving"
    parts = [
        f"## {request['title']}",
        f"**{request['question']}**",
        f"Automatic check: {mark}",
        keep_lines(request.get("summary", "")),
    ]
    evidence = dict(request.get("evidence") or {})
    doc = _read(evidence.pop(DOC_EVIDENCE.get(gate, ""), None))
    shown = {k: v for k, v in evidence.items()
             if v not in (None, "", [], {}) and not isinstance(v, dict | list)}
    if gate == "training":
        shown.pop("loss_plot", None)  # drawn live in the dialog instead
        anomalies = evidence.get("anomalies") or []
        if anomalies:
            parts.append("\n".join(f"- **{a.get('kind')}**: {a.get('message')}"
                                   for a in anomalies))
    for key in ("targets", "proposed_changes", "splits"):
        value = evidence.get(key)
        if isinstance(value, dict) and value:
            shown[key] = ", ".join(f"{k}={v}" for k, v in value.items())
    if shown:
        parts.append("| evidence | |\n|---|---|\n" + "\n".join(
            f"| {k} | {_cell(v)} |" for k, v in shown.items()))
    if doc:
        parts += ["---", doc]
    return "\n\n".join(p for p in parts if p)


def final_markdown(status: str, values: dict, run_dir: Path) -> str:
    """What the chat shows when the driver returns done, rejected or failed."""
    return markdown(Outcome(status, Path(run_dir).name, Path(run_dir), values=values))


def latest_attempt(run_dir: Path) -> Path | None:
    attempts = sorted((Path(run_dir) / "train").glob("attempt-*"),
                      key=lambda p: int(p.name.split("-")[-1]))
    return attempts[-1] if attempts else None


def loss_rows(run_dir: Path | None) -> list[dict]:
    """The latest attempt's metrics.jsonl rows as the run stands (resumed steps dropped)."""
    if run_dir is None or (attempt := latest_attempt(run_dir)) is None:
        return []
    from ftagent.tools.train.metrics import current_rows, read_metrics

    return current_rows(read_metrics(attempt))


def train_markdown(run_dir: Path) -> str | None:
    attempt = latest_attempt(run_dir)
    result = attempt / "result.json" if attempt else None
    if not result or not result.exists():
        return None
    from ftagent.tools.train.summary import training_summary

    return f"## Training ({attempt.name})\n\n" + keep_lines(
        training_summary(json.loads(result.read_text())))


def eval_markdown(run_dir: Path) -> str | None:
    return _read(Path(run_dir) / "eval" / "report.md") or None


def deploy_markdown(run_dir: Path, values: dict | None = None) -> str | None:
    d = (values or {}).get("deployment")
    merged = Path(run_dir) / "merged"
    if not d and not merged.exists():
        return None
    if not d:
        return f"Merged model: `{merged}`"
    from ftagent.tools.deploy.pipeline import DeployReport

    r = DeployReport.model_validate({k: v for k, v in d.items() if k in DeployReport.model_fields})
    commands = "\n".join([*r.vllm, *r.ollama])
    return (f"## Deployment check\n\n{'passed' if r.ok else 'FAILED'}: merged model "
            f"`{r.merged}`, adapter `{r.adapter}`, model card `{r.model_card}`\n\n{r.summary()}"
            + (f"\n\n```bash\n{commands}\n```" if commands else "")
            + "\n\n`/serve` serves the merged model here.")


def status_markdown(info: dict, tracker) -> str:
    """The run's id, status, inputs and each step's status."""
    from ftagent.tui.steps import LABELS, STEPS

    lines = [f"**Run `{info.get('run_id')}`**: {info.get('status')}"
             + (f", waiting at gate **{info['gate']}**" if info.get("gate") else ""),
             "", f"- goal: {info.get('goal')}", f"- data: `{info.get('data')}`",
             f"- model: {info.get('model') or 'chosen by the planner'}",
             f"- method: {info.get('method') or '-'}", "", "| step | status | |",
             "|---|---|---|"]
    for step in STEPS:
        lines.append(f"| {LABELS[step]} | {tracker.status[step]} | "
                     f"{tracker.detail.get(step, '')} |")
    lines.append(f"\nFolder: `{info.get('run_dir')}`")
    return "\n".join(lines)
