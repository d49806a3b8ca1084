"""The workflow's state: JSON-serialisable values only (paths, ids, plain dicts)."""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict


def merge_dicts(old: dict | None, new: dict | None) -> dict:
    return {**(old or {}), **(new or {})}


class WorkflowState(TypedDict, total=False):
    # inputs
    run_id: str
    run_dir: str
    goal: str
    data_path: str
    model: str  # as the user named it
    max_attempts: int
    constraints: dict[str, Any]  # plan choices given at the start (Constraints fields)
    teacher: dict[str, Any]  # TeacherSettings for distillation (no key: it stays in the env)
    provider: dict[str, Any]  # ProviderSettings: fine-tune at a provider (no key either)
    # planner
    hardware: dict[str, Any]
    plan: dict[str, Any]
    # data_prep
    data_report: dict[str, Any]
    # config
    attempt: int
    config_path: str
    provider_job: dict[str, Any]  # a provider run's job settings (instead of config_path)
    overrides: Annotated[dict[str, Any], merge_dicts]  # edits from gate decisions
    # trainer / tester / deployer
    train_result: dict[str, Any]
    eval_report: dict[str, Any]
    verdict: dict[str, Any]
    deployment: dict[str, Any]
    # gates: id -> last decision; history keeps every decision in order
    decisions: Annotated[dict[str, dict], merge_dicts]
    history: Annotated[list[dict], operator.add]
    status: str  # running | done | rejected
