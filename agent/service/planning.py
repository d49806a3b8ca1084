"""A plan without a run, for any front end (`ftagent plan`; a run's planner node makes
its own): a provider's base model gets the provider plan (job hyperparameters and cost,
no network needed), any other model the local planner's (method, model, memory, cost).
Bad input is an `InputError` (one line)."""

from __future__ import annotations

from pathlib import Path

from ftagent.agent.service.new_run import InputError
from pydantic import BaseModel


class PlanText(BaseModel):
    """A plan as it is shown and saved: plan.json's fields and plan.md's text."""

    plan: dict
    markdown: str


def make_plan(goal: str, data: str | Path, model: str | None, constraints,
              provider: dict | None = None, *, require_local: bool = False,
              hardware=None) -> PlanText:
    """`constraints`: tools.plan.types.Constraints; `provider`: the provider options given
    with `model` (`new_run.provider_settings`); `require_local` and `hardware` shape a
    local plan only."""
    from ftagent.agent.service.new_run import provider_settings
    from ftagent.tools.data import DataError
    from ftagent.tools.models import ModelNotFoundError

    settings = provider_settings(model, **(provider or {}))
    try:
        if settings is None:
            from ftagent.tools.plan.planner import plan_for
            from ftagent.tools.plan.report import plan_markdown

            planned = plan_for(goal, data, model, constraints=constraints,
                               require_local=require_local, hardware=hardware)
            return PlanText(plan=planned.plan.model_dump(),
                            markdown=plan_markdown(planned.plan))
        if require_local or hardware is not None:
            raise InputError(f"{settings.model} is fine-tuned at {settings.url}: local "
                             "models and GPUs do not apply to its plan")
        from ftagent.tools.provider.plan import provider_plan, provider_plan_markdown

        plan = provider_plan(goal, data, settings, constraints)
        return PlanText(plan=plan.model_dump(), markdown=provider_plan_markdown(plan))
    except (DataError, ModelNotFoundError) as exc:
        raise InputError(str(exc)) from None
