"""OpenAI's fine-tuning objects, both ways: the job request as it arrives (old top-level
`hyperparameters` or the `method` form, supervised or DPO) and the `file`,
`fine_tuning.job`, `fine_tuning.job.event`, `fine_tuning.job.checkpoint` and `list`
objects as the official client parses them. Field names follow the client's types
(openai/types/fine_tuning/*.py); nothing here touches disk.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

ORGANIZATION = "org-ftagent"  # jobs belong to this server; OpenAI's field is required
SUFFIX_PATTERN = r"^[A-Za-z0-9._-]{1,64}$"

Auto = Literal["auto"]


class Hyperparameters(BaseModel):
    """Ranges as OpenAI accepts them; "auto" leaves ftagent's planner to choose."""

    model_config = ConfigDict(extra="forbid")
    n_epochs: Auto | int | None = Field(None, description="1..50")
    batch_size: Auto | int | None = Field(None, description="1..256")
    learning_rate_multiplier: Auto | float | None = Field(None, description="> 0, at most 100")
    beta: Auto | float | None = Field(None, description="DPO only: > 0, at most 2")

    @model_validator(mode="after")
    def _ranges(self) -> Hyperparameters:
        limits = {"n_epochs": (1, 50), "batch_size": (1, 256),
                  "learning_rate_multiplier": (1e-6, 100), "beta": (1e-6, 2)}
        for name, (low, high) in limits.items():
            value = getattr(self, name)
            if isinstance(value, int | float) and not low <= value <= high:
                raise ValueError(f"{name} must be between {low:g} and {high:g}, got {value}")
        return self

    def given(self) -> dict:
        return self.model_dump(exclude_none=True)


class _MethodPart(BaseModel):
    model_config = ConfigDict(extra="ignore")
    hyperparameters: Hyperparameters | None = None


class Method(BaseModel):
    model_config = ConfigDict(extra="ignore")
    type: Literal["supervised", "dpo", "reinforcement"]
    supervised: _MethodPart | None = None
    dpo: _MethodPart | None = None
    reinforcement: dict | None = None


class JobRequest(BaseModel):
    """POST /v1/fine_tuning/jobs."""

    model_config = ConfigDict(extra="ignore")  # integrations etc.: accepted, not used
    model: str
    training_file: str
    validation_file: str | None = None
    suffix: str | None = Field(None, pattern=SUFFIX_PATTERN)
    seed: int | None = Field(None, ge=0, le=2**31 - 1)
    hyperparameters: Hyperparameters | None = None
    method: Method | None = None
    metadata: dict[str, str] | None = None

    def kind_and_hyperparameters(self) -> tuple[str, dict]:
        """("supervised" | "dpo", the hyperparameters given) from either form."""
        if self.method is None:
            hyper = self.hyperparameters.given() if self.hyperparameters else {}
            if "beta" in hyper:
                raise ValueError("hyperparameters.beta is a DPO setting: use method "
                                 "{type: dpo, dpo: {hyperparameters: {beta: ...}}}")
            return "supervised", hyper
        kind = self.method.type
        if kind == "reinforcement":
            raise ValueError("method.type reinforcement is not supported by this server "
                             "(supervised and dpo are)")
        if self.hyperparameters and self.hyperparameters.given():
            raise ValueError("give hyperparameters either at the top level or in method, "
                             "not both")
        part = getattr(self.method, kind)
        hyper = part.hyperparameters.given() if part and part.hyperparameters else {}
        if kind == "supervised" and "beta" in hyper:
            raise ValueError("method.supervised.hyperparameters.beta: beta is a DPO setting")
        return kind, hyper


def file_object(doc: dict) -> dict:
    return {"id": doc["id"], "object": "file", "bytes": doc["bytes"],
            "created_at": doc["created_at"], "filename": doc["filename"],
            "purpose": doc["purpose"], "status": "processed", "expires_at": None,
            "status_details": None}


def job_object(doc: dict) -> dict:
    """A job row as OpenAI's `fine_tuning.job`."""
    kind, hyper = doc["method_type"], dict(doc.get("resolved") or doc["hyperparameters"])
    shown = {k: hyper.get(k, "auto") for k in ("n_epochs", "batch_size",
                                                 "learning_rate_multiplier")}
    method: dict[str, Any] = {"type": kind,
                              kind: {"hyperparameters": shown | (
                                  {"beta": hyper.get("beta", "auto")} if kind == "dpo" else {})}}
    return {
        "id": doc["id"], "object": "fine_tuning.job", "created_at": doc["created_at"],
        "error": doc.get("error"), "fine_tuned_model": doc.get("fine_tuned_model"),
        "finished_at": doc.get("finished_at"), "hyperparameters": shown,
        "model": doc["model"], "organization_id": ORGANIZATION,
        "result_files": doc.get("result_files") or [], "seed": doc["seed"],
        "status": doc["status"], "trained_tokens": doc.get("trained_tokens"),
        "training_file": doc["training_file"], "validation_file": doc.get("validation_file"),
        "estimated_finish": None, "integrations": [], "metadata": doc.get("metadata"),
        "method": method, "user_provided_suffix": doc.get("suffix"),
    }


def event_object(event_id: str, created: float, message: str, level: str = "info",
                 data: dict | None = None) -> dict:
    return {"id": event_id, "object": "fine_tuning.job.event", "created_at": int(created),
            "level": level, "message": message, "data": data,
            "type": "metrics" if data and "step" in data else "message"}


def checkpoint_object(job: dict, step: int, created: float, metrics: dict) -> dict:
    return {"id": f"ftckpt-{job['id'].removeprefix('ftjob-')}-{step}",
            "object": "fine_tuning.job.checkpoint", "created_at": int(created),
            "fine_tuned_model_checkpoint": f"{job['ft_name']}:ckpt-step-{step}",
            "fine_tuning_job_id": job["id"], "metrics": {"step": float(step), **metrics},
            "step_number": step}


def page(items: list[dict], after: str | None, limit: int) -> dict:
    """OpenAI's cursor pagination: the `limit` items that follow the one whose id is
    `after` (from the start when None), and whether more follow."""
    start = 0
    if after is not None:
        ids = [item["id"] for item in items]
        start = ids.index(after) + 1 if after in ids else len(items)
    chosen = items[start:start + limit]
    return {"object": "list", "data": chosen, "has_more": start + limit < len(items),
            "first_id": chosen[0]["id"] if chosen else None,
            "last_id": chosen[-1]["id"] if chosen else None}
