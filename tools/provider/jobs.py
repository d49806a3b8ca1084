"""A provider fine-tuning job from start to end: upload the files, create the job, follow
its status and events to the end, cancel it when the follower is stopped.

The job's id is written to `provider_job.json` in the attempt's folder as soon as the job
exists, so a follower that was killed (no chance to cancel) is resumed by following the
same job instead of paying for a second one. A follower stopped by a signal or Ctrl-C
cancels the job: a running job goes on costing money, and the run that wanted it has
stopped; its resume starts a new job.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ftagent.tools.atomic import write_json
from ftagent.tools.provider.settings import ProviderError, ProviderSettings

RECORD = "provider_job.json"
FINISHED = ("succeeded", "failed", "cancelled")
EventSink = Callable[[dict], None]


def _said(exc: Exception, settings: ProviderSettings) -> ProviderError:
    import openai

    where = settings.url
    if isinstance(exc, openai.AuthenticationError):
        return ProviderError(f"{where} refused the key in {settings.api_key_env} (401)")
    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
        return ProviderError(f"cannot reach {where}: {exc}")
    if isinstance(exc, openai.APIStatusError):
        body = exc.body if isinstance(exc.body, dict) else {}
        return ProviderError(f"{where} answered {exc.status_code}: "
                             f"{body.get('message') or exc.message}")
    return ProviderError(f"{type(exc).__name__}: {exc}")


METHODS = ("supervised", "dpo")


def method_body(hyperparameters: dict, method: str = "supervised") -> dict:
    """OpenAI's `method` form: {"type": "dpo", "dpo": {"hyperparameters": {"beta": ...}}}
    and its supervised twin; "auto" values are left out (the provider chooses)."""
    if method not in METHODS:
        raise ValueError(f"provider job method '{method}': one of {', '.join(METHODS)}")
    hyper = {k: v for k, v in hyperparameters.items() if v not in (None, "auto")}
    if method != "dpo":
        hyper.pop("beta", None)  # a DPO setting; a supervised job refuses it
    return {"type": method, method: {"hyperparameters": hyper}}


def _event(e) -> dict:
    return {"id": e.id, "created_at": e.created_at, "level": e.level, "message": e.message,
            "kind": getattr(e, "type", None) or "message",
            "data": e.data if isinstance(e.data, dict) else None}


def new_events(client, job_id: str, seen: set[str]) -> list[dict]:
    """The job's events not seen yet, oldest first (the API lists newest first)."""
    found, after = [], None
    while True:
        page = client.fine_tuning.jobs.list_events(job_id, limit=100,
                                                   **({"after": after} if after else {}))
        fresh = [e for e in page.data if e.id not in seen]
        found += fresh
        if len(fresh) < len(page.data) or not page.has_more or not page.data:
            break
        after = page.data[-1].id
    seen.update(e.id for e in found)
    return [_event(e) for e in reversed(found)]


def progress_row(event: dict) -> dict | None:
    """A `metrics` event as a training progress row (the local trainer's field names)."""
    data = event.get("data") or {}
    if event["kind"] != "metrics" or "step" not in data:
        return None
    row = {"step": data["step"], "max_steps": data.get("total_steps")}
    for theirs, ours in (("train_loss", "loss"), ("valid_loss", "eval_loss"),
                         ("train_mean_token_accuracy", "mean_token_accuracy")):
        if isinstance(data.get(theirs), int | float):
            row[ours] = data[theirs]
    return row


def start_job(settings: ProviderSettings, files: dict[str, str], hyperparameters: dict,
              suffix: str, seed: int | None, out_dir: Path, emit: EventSink,
              method: str = "supervised") -> dict:
    """Upload the files and create the job; the record written to `out_dir`."""
    client = settings.client()
    try:
        ids = {}
        for param, path in files.items():
            with open(path, "rb") as fh:
                f = client.files.create(file=(Path(path).name, fh), purpose="fine-tune")
            ids[param] = f.id
            emit({"type": "provider_file_uploaded", "param": param, "file_id": f.id,
                  "bytes": f.bytes})
        optional = {"validation_file": ids.get("validation_file"), "suffix": suffix or None,
                    "seed": seed}  # left out when unset, rather than sent as null
        job = client.fine_tuning.jobs.create(
            model=settings.model, training_file=ids["training_file"],
            method=method_body(hyperparameters, method),
            **{k: v for k, v in optional.items() if v is not None})
    except Exception as exc:  # noqa: BLE001 - every API failure becomes one line
        raise _said(exc, settings) from None
    record = {"job_id": job.id, "model": settings.model, "base_url": settings.url,
              "files": ids, "method": method, "hyperparameters": hyperparameters,
              "suffix": suffix,
              "seed": seed, "created_at": job.created_at, "status": job.status}
    write_json(Path(out_dir) / RECORD, record)
    emit({"type": "provider_job_created", "job_id": job.id, "model": settings.model,
          "method": method, "hyperparameters": hyperparameters, "status": job.status})
    return record


class Stopped(KeyboardInterrupt):
    """The follower was asked to stop (Ctrl-C, SIGTERM) from another thread."""


def follow_job(settings: ProviderSettings, job_id: str, emit: EventSink,
               timeline: list[dict], stop: threading.Event | None = None) -> dict:
    """Poll the job to a final status, emitting its status changes, its events and its
    metrics as `train_progress` rows; returns the job as a dict. `stop` set: raises
    Stopped (the caller cancels the job)."""
    client = settings.client()
    seen: set[str] = set()
    status = timeline[-1]["status"] if timeline else None
    while True:
        try:
            job = client.fine_tuning.jobs.retrieve(job_id)
            events = new_events(client, job_id, seen)
        except Exception as exc:  # noqa: BLE001
            raise _said(exc, settings) from None
        for e in events:
            row = progress_row(e)
            if row is not None:
                emit({"type": "train_progress", "provider_job": job_id, **row})
            else:
                emit({"type": "provider_event", "job_id": job_id, **e})
        if job.status != status:
            status = job.status
            at = job.finished_at if status in FINISHED and job.finished_at else time.time()
            timeline.append({"status": status, "time": at})
            emit({"type": "provider_status", "job_id": job_id, "status": status, "at": at})
        if status in FINISHED:
            return job.model_dump()
        if stop is not None and stop.wait(settings.poll_s):
            raise Stopped("the run was stopped")
        if stop is None:
            time.sleep(settings.poll_s)


def cancel_job(settings: ProviderSettings, job_id: str) -> str:
    """Cancel the job; returns its status afterwards (a finished job stays as it was)."""
    client = settings.client()
    try:
        job = client.fine_tuning.jobs.retrieve(job_id)
        if job.status in FINISHED:
            return job.status
        return client.fine_tuning.jobs.cancel(job_id).status
    except Exception as exc:  # noqa: BLE001
        raise _said(exc, settings) from None


def run_job(settings: ProviderSettings, files: dict[str, str], hyperparameters: dict,
            suffix: str, seed: int | None, out_dir: str | Path, emit: EventSink,
            stop: threading.Event | None = None, method: str = "supervised") -> dict:
    """Start (or, with a record in `out_dir`, resume following) the job and follow it to
    the end. Stopped on the way (`stop` set by the driver on Ctrl-C or SIGTERM, a
    KeyboardInterrupt in this thread, any error), the job is cancelled before the
    exception goes on. Returns the result the
    workflow keeps: the tuned model's id, the steps and last loss, the timeline."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RECORD
    record = json.loads(path.read_text()) if path.is_file() else None
    if record is None or record.get("status") == "cancelled":
        record = start_job(settings, files, hyperparameters, suffix, seed, out_dir, emit,
                           method)
    else:
        emit({"type": "provider_job_resumed", "job_id": record["job_id"]})
    timeline: list[dict] = [{"status": "created", "time": record["created_at"]}]
    steps: list[dict] = []

    def sink(event: dict) -> None:
        if event["type"] == "train_progress":
            steps.append(event)
        emit(event)

    try:
        job = follow_job(settings, record["job_id"], sink, timeline, stop)
    except BaseException as exc:
        why = f"{type(exc).__name__}: {exc}".rstrip(": ")
        try:
            status = cancel_job(settings, record["job_id"])
        except ProviderError as err:
            status = f"not cancelled ({err})"
        write_json(path, record | {"status": status, "stopped_by": why})
        emit({"type": "provider_job_cancelled", "job_id": record["job_id"], "status": status,
              "why": why})
        raise
    write_json(path, record | {"status": job["status"], "timeline": timeline})
    if job["status"] != "succeeded":
        error = job.get("error") or {}
        raise ProviderError(f"provider job {job['id']} {job['status']}"
                            + (f": {error.get('message')}" if error.get("message") else ""))
    losses = [s for s in steps if "loss" in s]
    return {
        "provider_job": job["id"], "output": job["fine_tuned_model"],
        "method": record.get("method", "supervised"),
        "fine_tuned_model": job["fine_tuned_model"],
        "global_step": max((s["step"] for s in steps), default=0),
        "max_steps": max((s.get("max_steps") or 0 for s in steps), default=0),
        "train_loss": losses[-1]["loss"] if losses else None,
        "eval_loss": next((s["eval_loss"] for s in reversed(steps) if "eval_loss" in s), None),
        "trained_tokens": job.get("trained_tokens"),
        "hyperparameters": job.get("hyperparameters"),
        "result_files": job.get("result_files") or [],
        "timeline": timeline, "files": record["files"],
    }
