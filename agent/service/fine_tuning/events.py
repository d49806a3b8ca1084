"""A job's events: its own (created, validated, queued, cancelled, ...; in the store) and
its workflow run's, read from the run's `events.jsonl` each time they are asked for, so
the API shows what the workflow itself logged, nothing copied or summarised apart from
one line of text per event. Training progress rows become `metrics` events with OpenAI's
field names (step, total_steps, train_loss, valid_loss); they are read from each attempt's
`metrics.jsonl`, which the training process writes itself, not from the run's events: a
workflow process stopped mid-training (a server restart) no longer relays the rows its
trainer goes on writing, and the job's metrics must still be complete.
"""

from __future__ import annotations

from pathlib import Path

from ftagent.agent.service.fine_tuning.shapes import event_object
from ftagent.agent.service.fine_tuning.store import Store


def _number(value, digits: int = 4) -> str:
    return f"{value:.{digits}f}" if isinstance(value, int | float) else "?"


def _progress(e: dict) -> tuple[str, str, dict | None] | None:
    step, total = e.get("step"), e.get("max_steps")
    kind = e.get("event")
    if kind == "begin":
        return "info", (f"Training resumed at step {step} of {total}" if step else
                        f"Training started: {total} steps"), None
    data = {"step": step, "total_steps": total}
    if kind == "eval" and "eval_loss" in e:
        data["valid_loss"] = e["eval_loss"]
        return "info", f"Step {step}/{total}: validation loss={_number(e['eval_loss'])}", data
    if "loss" in e:
        data["train_loss"] = e["loss"]
        if "mean_token_accuracy" in e:
            data["train_mean_token_accuracy"] = e["mean_token_accuracy"]
        return "info", f"Step {step}/{total}: training loss={_number(e['loss'])}", data
    if "train_loss" in e:
        return "info", f"Training done at step {step}: mean loss {_number(e['train_loss'])}", None
    return None


def describe(e: dict) -> tuple[str, str, dict | None] | None:
    """(level, message, metrics data) for one workflow event; None for one not shown."""
    from ftagent.agent.service.outcome import node_summary

    kind = e.get("type")
    if kind in ("run_started", "run_resumed"):
        return "info", f"Workflow run {e.get('run_id')} {kind.removeprefix('run_')}", None
    if kind == "node_started":
        return "info", f"Step {e.get('node')} started", None
    if kind == "node_finished":
        return "info", node_summary(e) or f"Step {e.get('node')} finished", None
    if kind == "gate_decision":
        level = "warn" if e.get("action") == "reject" else "info"
        how = e.get("detail") or e.get("reason") or e.get("source")
        return level, f"Gate {e.get('gate')}: {e.get('action')} ({how})", None
    if kind == "run_waiting":
        why = e.get("unmet") or "a person decides"
        return "warn", f"Waiting at the {e.get('gate')} gate: {why}", None
    if kind == "run_failed":
        return "error", f"Workflow failed: {e.get('error')}", None
    if kind == "run_finished":
        return "info", f"Workflow finished: {e.get('status')}", None
    if kind == "run_cancelled":
        return "warn", "Workflow stopped: the job was cancelled", None
    return None


def job_events(store: Store, job: dict) -> list[dict]:
    """Every event of the job, newest first (OpenAI's order), with stable ids."""
    from ftagent.agent.service.runs import EVENTS
    from ftagent.tools import jsonl_log

    tag = job["id"].removeprefix("ftjob-")
    items = [(e["time"], f"ftevent-{tag}-j{e['seq']}", e["level"], e["message"], e["data"])
             for e in store.events(job["id"])]
    run_dir = job.get("run_dir")
    rows = jsonl_log.read(Path(run_dir) / EVENTS, stop_at_partial=True) if run_dir else []
    for i, e in enumerate(rows):
        if (shown := describe(e)) is not None:
            items.append((e.get("time", 0), f"ftevent-{tag}-r{i}", *shown))
    for log in sorted(Path(run_dir).glob("train/attempt-*/metrics.jsonl")) if run_dir else []:
        attempt = log.parent.name.removeprefix("attempt-")
        for i, e in enumerate(jsonl_log.read(log, stop_at_partial=True)):
            if (shown := _progress(e)) is not None:
                items.append((e.get("time", 0), f"ftevent-{tag}-a{attempt}-{i}", *shown))
    order = sorted(range(len(items)), key=lambda i: (items[i][0], i), reverse=True)
    return [event_object(eid, t, message, level, data)
            for t, eid, level, message, data in (items[i] for i in order)]
