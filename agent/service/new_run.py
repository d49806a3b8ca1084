"""Making a run from what a person typed, with the same checks for the command line, the
terminal app and the chat: a goal, data that validates with enough usable examples, and a
model that resolves. Bad input is an `InputError` (one line) and makes no run folder.
"""

from __future__ import annotations

from pathlib import Path

MIN_EXAMPLES = 10  # fewer usable examples than this cannot be split and trained


class InputError(ValueError):
    """Bad input from the person: shown as one line, no run folder is made."""


def is_provider_model(model: str | None, base_url: str | None = None) -> bool:
    """Is this base model fine-tuned at a provider (no local model to resolve)? An OpenAI
    model name alone means OpenAI's API; a provider URL means that endpoint."""
    from ftagent.tools.provider.settings import is_openai_model

    return bool(base_url) or is_openai_model(model)


def choose_model(model: str | None, base_url: str | None, api_key_env: str | None,
                 before: tuple[str | None, dict]) -> tuple[str | None, dict]:
    """The next run's (base model, provider options) once a person names a model or
    provider options in the app or the chat, from what was chosen `before`: a model named
    anew comes with the options given with it, options alone change the chosen model's."""
    given = {k: v for k, v in (("base_url", base_url), ("api_key_env", api_key_env)) if v}
    if model:
        return model, given
    return before[0], {**before[1], **given}


def provider_settings(model: str | None, base_url: str | None = None,
                      api_key_env: str | None = None, probes: int | None = None):
    """What a choice of base model means when it names a provider, in one place for the
    command line (`--model`, `--provider-url`, `--provider-key-env`, `--provider-probes`),
    the terminal app (the same words as slash-command options) and the chat (tool
    arguments): `ProviderSettings` (they name the key's environment variable, never the
    key), or None for a local model. InputError for a URL without a model or settings the
    provider's checks refuse."""
    from ftagent.tools.provider.settings import ProviderSettings
    from pydantic import ValidationError

    if not is_provider_model(model, base_url):
        return None
    if not model:
        raise InputError("a provider URL needs a model: the provider's name of the base "
                         "model")
    fields: dict = {"model": model, "base_url": base_url or None}
    if api_key_env:
        fields["api_key_env"] = api_key_env
    if probes is not None:
        fields["probes"] = probes
    try:
        return ProviderSettings(**fields)
    except ValidationError as exc:
        first = exc.errors()[0]
        raise InputError(f"provider {first['loc'][0]}: {first['msg']}") from None


def create_workflow_run(goal: str, data: str | Path, model: str | None, runs_root: Path,
                        max_attempts: int = 2, run_id: str | None = None,
                        constraints: dict | None = None, teacher: dict | None = None,
                        overrides: dict | None = None, provider: dict | None = None) -> Path:
    """Check the inputs (goal, data that validates with enough usable examples, a model
    that resolves) and make the run folder: `runs_root/<run id>`, or `runs_root` itself
    when `run_id` is given. `overrides` are training-config values fixed from the start
    (as a gate edit would set them; a fine-tuning job's hyperparameters). `provider`: the
    provider options given with `model` (base_url, api_key_env, probes; see
    `provider_settings`): with a URL, or with an OpenAI model name alone, `model` is a
    provider's base model, not a local one, and its key must be set in the environment.
    Bad input raises InputError and makes no folder."""
    from ftagent.agent.service.runs import RunError, create_run, new_run_id
    from ftagent.tools.data import DataError, PrepareOptions, validate_dataset
    from ftagent.tools.models import ModelNotFoundError, resolve_model
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    if not goal.strip():
        raise InputError("the goal must say what the model should do")
    data = Path(data).expanduser()
    try:
        report = validate_dataset(data, PrepareOptions(near_dup_threshold=None))
    except DataError as exc:
        raise InputError(str(exc)) from None
    if report.kept < MIN_EXAMPLES:
        problems = "\n".join(
            f"  {c.name}: {c.count} ({'; '.join(c.examples)})" for c in report.errors)
        raise InputError(
            f"{data}: only {report.kept} usable examples after validation; at least "
            f"{MIN_EXAMPLES} are needed. Problems found:\n{problems}\n"
            f"See everything with: ftagent data validate {data}")
    settings = provider_settings(model, **(provider or {}))
    if settings is not None:
        if settings.api_key() is None:  # checked now, not after the plan and the data
            raise InputError(f"set {settings.api_key_env} to the API key of {settings.url} "
                             "(keys are read from the environment only)")
        name = settings.model
    else:
        try:
            name = resolve_model(model).name if model else None
        except ModelNotFoundError as exc:
            raise InputError(str(exc)) from None
    target = Path(runs_root) if run_id else Path(runs_root) / (run_id := new_run_id())
    inputs = {"goal": goal, "data_path": str(data.resolve()),
              "model": name,  # None: the planner picks a local one
              "max_attempts": max_attempts}
    if settings is not None:  # they name the key's variable; the key itself is never stored
        inputs["provider"] = settings.model_dump()
    if constraints:  # plan choices fixed at the start, e.g. {"safety_mix": 0}
        inputs["constraints"] = constraints
    if teacher:  # TeacherSettings for distillation; the key stays in the environment
        inputs["teacher"] = teacher
    if overrides:
        from ftagent.agent.graph.gates import DecisionError, check_changes

        try:  # the checks every gate edit passes: known keys, values the config accepts
            check_changes("dataset", overrides)
        except DecisionError as exc:
            raise InputError(str(exc)) from None
        inputs["overrides"] = overrides
    try:
        return create_run(target, run_id, inputs)
    except RunError as exc:
        raise InputError(str(exc)) from None
