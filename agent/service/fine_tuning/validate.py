"""A job's `validating_files` step: check the uploaded files line by line (OpenAI's chat or
preference format), write the checked copy the workflow trains on into the job's folder
(the upload itself is never changed), and make the workflow run with the same checks
every front end uses (`new_run.create_workflow_run`: enough usable examples, a model that
resolves). A problem becomes an OpenAI-shaped error that names the file and the line.
"""

from __future__ import annotations

from pathlib import Path

from ftagent.agent.service.fine_tuning.store import Store

DEFAULT_GOAL = ("Learn to answer like the assistant messages of the training file "
                "(an OpenAI fine-tuning job)")


class JobError(Exception):
    """Why a job failed, as OpenAI's `error` object {code, message, param}."""

    def __init__(self, code: str, message: str, param: str | None = None):
        super().__init__(message)
        self.code, self.message, self.param = code, message, param

    def body(self) -> dict:
        return {"code": self.code, "message": self.message, "param": self.param}


def check_file(store: Store, file_id: str, param: str, kind: str) -> list[dict]:
    """The rows of an uploaded file in ftagent's format, checked line by line."""
    from ftagent.tools.config.imported import ConfigImportError
    from ftagent.tools.config.openai_jobs import read_openai_chat, read_openai_preference

    if store.file(file_id) is None:
        raise JobError(f"invalid_{param}", f"{param} {file_id} was deleted before the job "
                       "started", param)
    read = read_openai_preference if kind == "dpo" else read_openai_chat
    try:
        return read(store.file_path(file_id), name=f"{param} {file_id}").rows
    except ConfigImportError as exc:
        expected = ("one JSON object a line with input.messages, preferred_output and "
                    "non_preferred_output" if kind == "dpo" else
                    "one JSON object a line with a messages list ending in an assistant "
                    "message")
        raise JobError(f"invalid_{param}", f"Invalid file format: {exc} (expected {expected})",
                       param) from None


def prepare_run(store: Store, job: dict, base_model: str) -> Path:
    """Check the job's files and make its workflow run; returns the run folder. A run
    folder that exists already (a server stopped after this step) is returned as it is."""
    from ftagent.agent.service.new_run import InputError, create_workflow_run
    from ftagent.agent.service.runs import MANIFEST
    from ftagent.tools.atomic import write_jsonl
    from ftagent.tools.config.openai_jobs import hyperparameter_fields

    job_dir = store.job_dir(job["id"])
    run_dir = job_dir / "run"
    if (run_dir / MANIFEST).is_file():
        return run_dir
    kind = job["method_type"]
    train = job_dir / "training.jsonl"
    write_jsonl(train, check_file(store, job["training_file"], "training_file", kind))
    if job.get("validation_file"):  # checked like the training file; see the job's events
        write_jsonl(job_dir / "validation.jsonl",
                    check_file(store, job["validation_file"], "validation_file", kind))
    overrides = hyperparameter_fields(job["hyperparameters"]) | {"seed": job["seed"]}
    constraints = {"method": "dpo"} if kind == "dpo" else None
    goal = (job.get("metadata") or {}).get("goal") or DEFAULT_GOAL
    try:
        return create_workflow_run(goal, train, base_model, run_dir, max_attempts=1,
                                   run_id=job["id"], constraints=constraints,
                                   overrides=overrides)
    except InputError as exc:
        message = str(exc).replace(str(train), f"training_file {job['training_file']}")
        raise JobError("invalid_training_file", message, "training_file") from None
