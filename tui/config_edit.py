"""Checking what a person typed in the config editor, with the project's config model.
Two kinds of text: a whole config.yaml (validated as a TrainConfig; the changes against
the file on disk become a gate's edit), or, before a run has a config, a mapping of
changes (plan choices such as `method: qlora`, config fields such as `lora.r: 32`)."""

from __future__ import annotations

import yaml
from ftagent.agent.graph.gates import plan_keys
from ftagent.tools.config.train_config import TrainConfig
from pydantic import ValidationError

CHANGES_TEMPLATE = """\
# Changes for gate '{gate}': one `key: value` a line; remove the '#' to use a line.
# Plan choices (the plan is made again with them fixed): {plan_keys}
# Training config fields (dotted for nested ones), e.g.:
# method: qlora
# learning_rate: 0.0005
# num_epochs: 2
# lora.r: 32
"""


class ConfigTextError(ValueError):
    """What is wrong, field by field, in one readable line."""


def _problems(exc: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in e['loc']) or 'config'}: {e['msg']}"
                     for e in exc.errors())


def _mapping(text: str) -> dict:
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark else ""
        raise ConfigTextError(f"not valid YAML{where}: {getattr(exc, 'problem', exc)}") from None
    if not isinstance(data, dict):
        raise ConfigTextError("expected `key: value` lines (a YAML mapping)")
    return data


def parse_config(text: str) -> TrainConfig:
    """The whole config, validated; ConfigTextError names each bad field."""
    try:
        return TrainConfig.model_validate(_mapping(text))
    except ValidationError as exc:
        raise ConfigTextError(_problems(exc)) from None


def _flat(data: dict) -> dict:
    out = {}
    for key, value in data.items():
        if isinstance(value, dict):
            out.update({f"{key}.{k}": v for k, v in value.items()})
        else:
            out[key] = value
    return out


def config_changes(old: TrainConfig, new: TrainConfig) -> dict:
    """Fields that differ, dotted one level deep (what apply_overrides takes)."""
    before, after = _flat(old.model_dump(mode="json")), _flat(new.model_dump(mode="json"))
    return {k: v for k, v in after.items() if before.get(k) != v}


def parse_changes(text: str, gate: str | None = None) -> dict:
    """A mapping of plan choices and config fields, checked by the one validation every
    gate decision goes through (agent.graph.gates.check_changes); without a gate, as the
    strategy gate (which accepts both) checks them."""
    from ftagent.agent.graph.gates import DecisionError, check_changes

    data = _mapping(text)
    try:
        return check_changes(gate or "strategy", data)
    except DecisionError as exc:
        raise ConfigTextError(str(exc)) from None


def changes_template(gate: str) -> str:
    return CHANGES_TEMPLATE.format(gate=gate, plan_keys=", ".join(sorted(plan_keys())))
