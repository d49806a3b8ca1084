"""The job manager: one thread that moves jobs through OpenAI's statuses and runs one
workflow at a time.

    validating_files -> queued -> running -> succeeded | failed      (cancelled from any
                                                                       of the first three)

Each tick it validates new jobs (`validate.prepare_run`), follows the worker process of
the running job (`worker.py`: the job's workflow run, driven by the operator's policy),
and when none runs starts the oldest job that should: one left `running` by a stopped
server first (its run resumes from its checkpoints), then the oldest `queued`. The job's
fate is what its run says (`outcome.json`, written by the worker), mapped honestly: a run
that finished is `succeeded` and its adapter is served at once as an `ft:` model; one
rejected at a gate, left waiting for a person, or failed is `failed` with the reason.

Stopping the server stops the worker (the run stays resumable and the job `running`);
a worker that outlived a server killed outright is adopted by the next one.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ftagent.agent.service.fine_tuning.shapes import JobRequest
from ftagent.agent.service.fine_tuning.store import Store
from ftagent.agent.service.fine_tuning.validate import JobError, prepare_run

OUTCOME = "outcome.json"
FINISHED = ("succeeded", "failed", "cancelled")
STOP_GRACE_S = 10.0  # a stopped worker's time to stop its trainer and exit


class RequestError(ValueError):
    """A request the API refuses (400/404): `param` and `code` as OpenAI reports them."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None,
                 status: int = 400):
        super().__init__(message)
        self.param, self.code, self.status = param, code, status


class JobManager:
    def __init__(self, store: Store, base_model: str, base_id: str,
                 on_model: Callable[[str, Path], None], policy: Path | None = None,
                 poll_s: float = 0.5):
        self.store, self.base_model, self.base_id = store, base_model, base_id
        self.on_model, self.policy, self.poll_s = on_model, policy, poll_s
        self._lock = threading.RLock()  # status changes: the thread, cancels from routes
        self._stopping = threading.Event()
        self._thread: threading.Thread | None = None
        self._worker: dict | None = None  # {job_id, pid, started, proc (None if adopted)}

    # ---- requests (route threads) --------------------------------------------------------

    def create(self, req: JobRequest) -> dict:
        """A new job in `validating_files`; the request's own mistakes are refused here."""
        from ftagent.agent.graph.gates import DecisionError, check_changes
        from ftagent.tools.config.openai_jobs import hyperparameter_fields

        if req.model not in (self.base_id, self.base_model):
            raise RequestError(f"Model {req.model} is not available for fine-tuning on this "
                               f"server; it fine-tunes `{self.base_id}`.", "model",
                               "model_not_available")
        for param in ("training_file", "validation_file"):
            file_id = getattr(req, param)
            doc = self.store.file(file_id) if file_id else None
            if file_id and (doc is None or doc["purpose"] != "fine-tune"):
                raise RequestError(f"invalid {param}: {file_id} is not an uploaded file with "
                                   "purpose fine-tune", param, "invalid_file")
        try:
            kind, hyper = req.kind_and_hyperparameters()
            check_changes("dataset", hyperparameter_fields(hyper))
        except (ValueError, DecisionError) as exc:
            raise RequestError(str(exc), "hyperparameters", "invalid_hyperparameters") \
                from None
        job_id = self.store.new_job_id()
        seed = req.seed if req.seed is not None else int.from_bytes(os.urandom(4)) % 2**31
        suffix = req.suffix or ""
        doc = {"id": job_id, "created_at": int(time.time()), "status": "validating_files",
               "model": req.model, "training_file": req.training_file,
               "validation_file": req.validation_file, "suffix": req.suffix, "seed": seed,
               "method_type": kind, "hyperparameters": hyper, "metadata": req.metadata,
               "ft_name": f"ft:{self.base_id}:{suffix}:{job_id}"}
        self.store.job_dir(job_id).mkdir(parents=True, exist_ok=True)
        self.store.add_job(doc)
        self.store.add_event(job_id, f"Created fine-tuning job: {job_id}")
        self.store.add_event(job_id, "Validating training file: " + req.training_file
                             + (f" and validation file: {req.validation_file}"
                                if req.validation_file else ""))
        return doc

    def job(self, job_id: str) -> dict:
        doc = self.store.job(job_id)
        if doc is None:
            raise RequestError(f"No fine-tuning job found with id {job_id}", "fine_tuning_job_id",
                               "fine_tuning_job_not_found", 404)
        return doc

    def cancel(self, job_id: str) -> dict:
        with self._lock:
            doc = self.job(job_id)
            if doc["status"] in FINISHED:
                raise RequestError(f"Job {job_id} is already {doc['status']}; only a job that "
                                   "has not finished can be cancelled.", "fine_tuning_job_id",
                                   "job_already_finished")
            doc = self.store.update_job(job_id, status="cancelled",
                                        finished_at=int(time.time()))
            self.store.add_event(job_id, "Fine-tuning job cancelled", "warn")
            if self._worker and self._worker["job_id"] == job_id:
                self._signal_worker(signal.SIGTERM)
                self._worker["deadline"] = time.monotonic() + STOP_GRACE_S
        return doc

    # ---- life cycle ------------------------------------------------------------------------

    def __enter__(self) -> JobManager:
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    def start(self) -> None:
        """Serve the models of finished jobs again, adopt a worker that outlived the last
        server, and start the thread."""
        for doc in reversed(self.store.jobs(("succeeded",))):
            with contextlib.suppress(Exception):  # a deleted run folder: the model is gone
                self.on_model(doc["fine_tuned_model"], Path(doc["adapter"]))
        for doc in self.store.jobs(("running",)):
            w = doc.get("worker") or {}
            if self._worker is None and _same_process(w.get("pid"), w.get("started")):
                self._worker = {"job_id": doc["id"], "pid": w["pid"],
                                "started": w["started"], "proc": None}
                self.store.add_event(doc["id"], "Server restarted: following the job's "
                                     "workflow, still running")
        self._thread = threading.Thread(target=self._loop, name="ftagent-ft-jobs", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread and the worker; the job stays `running` and resumes on the next
        start (its run resumes from its checkpoints)."""
        self._stopping.set()
        if self._thread:
            self._thread.join(30)
        with self._lock:
            if self._worker:
                job_id = self._worker["job_id"]
                self._signal_worker(signal.SIGTERM)
                self._reap(STOP_GRACE_S)
                if self.store.job(job_id)["status"] == "running":
                    self.store.add_event(job_id, "Server stopping: the workflow run is paused "
                                         "and resumes when the server starts again", "warn")
                self._worker = None

    # ---- the thread --------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stopping.is_set():
            try:
                self._tick()
            except Exception as exc:  # one bad job must not stop the queue
                print(f"fine-tuning job manager: {type(exc).__name__}: {exc}",
                      file=sys.stderr, flush=True)
            self._stopping.wait(self.poll_s)

    def _tick(self) -> None:
        for doc in reversed(self.store.jobs(("validating_files",))):
            if self._stopping.is_set():
                return
            self._validate(doc)
        with self._lock:
            if self._worker:
                self._follow()
            if self._worker is None and not self._stopping.is_set():
                waiting = (list(reversed(self.store.jobs(("running",))))
                           + list(reversed(self.store.jobs(("queued",)))))
                if waiting and waiting[0]["status"] == "running" and (
                        self.store.job_dir(waiting[0]["id"]) / OUTCOME).is_file():
                    self._finish(waiting[0])  # its worker ended while no server was up
                elif waiting:
                    self._start_worker(waiting[0])

    def _validate(self, doc: dict) -> None:
        try:
            run_dir = prepare_run(self.store, doc, self.base_model)
        except JobError as exc:
            with self._lock:
                if self.store.job(doc["id"])["status"] == "validating_files":
                    self.store.update_job(doc["id"], status="failed", error=exc.body(),
                                          finished_at=int(time.time()))
                    self.store.add_event(doc["id"], f"Validation failed: {exc.message}",
                                         "error")
            return
        with self._lock:
            if self.store.job(doc["id"])["status"] == "validating_files":  # not cancelled
                self.store.update_job(doc["id"], status="queued", run_dir=str(run_dir))
                if doc.get("validation_file"):
                    self.store.add_event(doc["id"], "validation_file checked. The workflow "
                                         "holds out its own validation and test splits from "
                                         "training_file; validation_file is kept with the job "
                                         "and not trained or scored on.")
                self.store.add_event(doc["id"], f"Files validated; workflow run {doc['id']} "
                                     "made. Fine-tuning job queued")
            else:
                self.store.update_job(doc["id"], run_dir=str(run_dir))

    def _start_worker(self, doc: dict) -> None:
        from ftagent.agent.service.runs import STATE_DB
        from ftagent.tools.paths import import_root

        job_dir = self.store.job_dir(doc["id"])
        (job_dir / OUTCOME).unlink(missing_ok=True)
        resumed = (Path(doc["run_dir"]) / STATE_DB).exists()
        cmd = [sys.executable, "-m", "ftagent.agent.service.fine_tuning.worker",
               doc["run_dir"], str(job_dir / OUTCOME)]
        cmd += [str(self.policy)] if self.policy else []
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(import_root()), *filter(None, [os.environ.get("PYTHONPATH")])])}
        with open(job_dir / "worker.log", "ab") as log:
            # its own session: a Ctrl-C at the server's terminal reaches the server, which
            # then stops the worker itself
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=job_dir,
                                    env=env, start_new_session=True)
        started = _create_time(proc.pid)
        self._worker = {"job_id": doc["id"], "pid": proc.pid, "started": started, "proc": proc}
        self.store.update_job(doc["id"], status="running",
                              worker={"pid": proc.pid, "started": started})
        self.store.add_event(doc["id"], "Fine-tuning job resumed its workflow run" if resumed
                             else "Fine-tuning job started")

    def _follow(self) -> None:
        w = self._worker
        doc = self.store.job(w["job_id"])
        if not doc.get("resolved"):
            self._note_config(doc)
        if self._worker_alive():
            if doc["status"] == "cancelled" and time.monotonic() > w.get("deadline", 0):
                self._signal_worker(signal.SIGKILL, group=True)
            return
        self._reap(0)
        self._worker = None
        if doc["status"] == "cancelled":
            from ftagent.agent.service.runs import append_event

            append_event(Path(doc["run_dir"]), {"type": "run_cancelled"})
            return
        self._finish(doc)

    def _finish(self, doc: dict) -> None:
        """The job's fate from where its run stopped."""
        path = self.store.job_dir(doc["id"]) / OUTCOME
        outcome = json.loads(path.read_text()) if path.is_file() else None
        now = int(time.time())
        if outcome is None:
            error = {"code": "workflow_interrupted", "param": None, "message": (
                f"The workflow process stopped before its run ended; see "
                f"{self.store.job_dir(doc['id']) / 'worker.log'}. `ftagent resume "
                f"{doc['id']}` continues the run.")}
            self._fail(doc, error)
            return
        status = outcome["status"]
        if status == "done":
            adapter = Path((outcome.get("deployment") or {}).get("adapter")
                           or Path(doc["run_dir"]) / "adapter")
            try:
                self.on_model(doc["ft_name"], adapter)
            except Exception as exc:  # e.g. no safetensors weights: nothing to serve
                self._fail(doc, {"code": "model_not_served", "param": None, "message": (
                    f"the run finished but its adapter {adapter} cannot be served: {exc}")})
                return
            extra = _results(self.store, doc, outcome.get("train_result") or {})
            self.store.update_job(doc["id"], status="succeeded", finished_at=now,
                                  fine_tuned_model=doc["ft_name"], adapter=str(adapter),
                                  **extra)
            self.store.add_event(doc["id"], f"New fine-tuned model created: {doc['ft_name']}")
            self.store.add_event(doc["id"], "The job has successfully completed")
            return
        decisions = outcome.get("decisions") or {}
        if status == "rejected":
            gate = next((g for g, d in decisions.items() if d.get("action") == "reject"), "?")
            reason = (decisions.get(gate) or {}).get("reason") or "no reason given"
            error = {"code": "rejected_at_gate", "param": None,
                     "message": f"The {gate} gate rejected the run: {reason}"}
        elif status == "waiting":
            error = {"code": "gate_not_approved", "param": None, "message": (
                f"The server's policy left the {outcome.get('gate')} gate to a person: "
                f"{outcome.get('unmet') or 'no rule approves it'}. The run waits; "
                f"`ftagent resume {doc['id']}` continues it.")}
        else:
            error = {"code": "workflow_failed", "param": None,
                     "message": outcome.get("error") or f"the run ended {status}"}
        self._fail(doc, error)

    def _fail(self, doc: dict, error: dict) -> None:
        self.store.update_job(doc["id"], status="failed", error=error,
                              finished_at=int(time.time()))
        self.store.add_event(doc["id"], f"Fine-tuning job failed: {error['message']}", "error")

    def _note_config(self, doc: dict) -> None:
        """The hyperparameters the run's config settled on ("auto" resolved), once."""
        from ftagent.tools.config.openai_jobs import OPENAI_BASE_LR
        from ftagent.tools.config.train_config import load_config

        path = Path(doc.get("run_dir") or "") / "config.yaml"
        if not path.is_file():
            return
        cfg = load_config(path)
        epochs = int(cfg.num_epochs) if float(cfg.num_epochs).is_integer() else cfg.num_epochs
        resolved = {"n_epochs": epochs, "batch_size": cfg.batch_size * cfg.grad_accum,
                    "learning_rate_multiplier": round(cfg.learning_rate / OPENAI_BASE_LR, 6)}
        if cfg.objective == "dpo":
            resolved["beta"] = cfg.dpo_beta
        self.store.update_job(doc["id"], resolved=resolved)

    # ---- the worker process --------------------------------------------------------------

    def _worker_alive(self) -> bool:
        w = self._worker
        if w["proc"] is not None:
            return w["proc"].poll() is None
        return _same_process(w["pid"], w["started"])

    def _signal_worker(self, sig: int, group: bool = False) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if group:  # the worker leads its own session: its children go with it
                os.killpg(self._worker["pid"], sig)
            else:
                os.kill(self._worker["pid"], sig)

    def _reap(self, grace: float) -> None:
        """Wait up to `grace` seconds for the worker, then kill what is left of it, and any
        training process of its run that outlived it."""
        deadline = time.monotonic() + grace
        while self._worker_alive() and time.monotonic() < deadline:
            time.sleep(0.1)
        if self._worker_alive():
            self._signal_worker(signal.SIGKILL, group=True)
            if self._worker["proc"] is not None:
                self._worker["proc"].wait(10)
        doc = self.store.job(self._worker["job_id"])
        _stop_training(Path(doc.get("run_dir") or ""))


def _create_time(pid: int) -> float | None:
    import psutil

    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _same_process(pid: int | None, started: float | None) -> bool:
    """The process is alive and is the one started then (not a recycled pid)."""
    from ftagent.tools.process import alive

    return bool(pid) and alive(pid) and _create_time(pid) == started


def _stop_training(run_dir: Path) -> None:
    """Terminate a training process of the run that is still alive (the trainer runs in a
    session of its own so that a killed front end leaves it running; a cancelled job
    must not)."""
    from ftagent.tools.train.jobs import live_job

    for out in sorted(run_dir.glob("train/attempt-*")):
        pid = live_job(out)
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while _same_process(pid, _create_time(pid)) and time.monotonic() < deadline:
                time.sleep(0.1)
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(pid, signal.SIGKILL)


def _results(store: Store, doc: dict, result: dict) -> dict:
    """The job's result file (OpenAI's step metrics CSV, purpose fine-tune-results) and
    trained tokens, from the training's metrics."""
    import csv
    import io

    from ftagent.tools.train.metrics import current_rows, read_metrics

    out = result.get("output")
    rows = current_rows(read_metrics(Path(out).parent)) if out else []
    logs = [r for r in rows if r.get("event") == "log" and "loss" in r]
    buf = io.StringIO()
    writer = csv.writer(buf)
    writer.writerow(["step", "train_loss", "train_accuracy", "valid_loss",
                     "valid_mean_token_accuracy"])
    evals = {r["step"]: r for r in rows if r.get("event") == "eval"}
    for r in logs:
        ev = evals.get(r["step"], {})
        writer.writerow([r["step"], r["loss"], r.get("mean_token_accuracy", ""),
                         ev.get("eval_loss", ""), ev.get("eval_mean_token_accuracy", "")])
    file_id = store.new_file_id()
    data = buf.getvalue().encode()
    store.file_path(file_id).write_bytes(data)
    store.add_file({"id": file_id, "created_at": int(time.time()), "bytes": len(data),
                    "filename": "step_metrics.csv", "purpose": "fine-tune-results"})
    tokens = [r["num_tokens"] for r in rows if isinstance(r.get("num_tokens"), int | float)]
    return {"result_files": [file_id], "trained_tokens": int(max(tokens)) if tokens else None}
