"""config: write the editable config.yaml for this attempt, from the plan."""

from __future__ import annotations

from pathlib import Path

from ftagent.agent.graph.gates import plan_keys
from ftagent.tools.atomic import write_text
from ftagent.tools.config.train_config import apply_overrides, config_from_plan, dump_yaml
from ftagent.tools.config.why import config_rationale

HEADER = """ftagent training config for run {run_id}, attempt {attempt}.
Values come from the plan (plan.md says why); edit and re-run with:
  python -m tools.train {path}
"""


def base_model_config(cfg) -> dict | None:
    """The base model's config.json, if it is a local folder."""
    import json

    path = Path(cfg.model) / "config.json"
    return json.loads(path.read_text()) if path.is_file() else None


def check_planned_config(cfg, plan: dict, device: str, model_cfg: dict | None,
                         tokens=None) -> list:
    """Settings that load but would train badly on this model; errors stop here, before
    anything is launched, with what to change."""
    from ftagent.tools.config.check import check_config

    findings = check_config(
        cfg, model_cfg, memory_budget_gb=plan.get("memory_budget_gb"), device=device,
        tokens=tokens,
    )
    errors = [f for f in findings if f.severity == "error"]
    if errors:
        raise ValueError("the training config has errors:\n" + "\n".join(
            f"  {f.field}: {f.message} {f.action}" for f in errors))
    return findings


def config(state: dict) -> dict:
    if state.get("provider"):  # a provider's base model: agent/graph/nodes/provider.py
        from ftagent.agent.graph.nodes import provider

        return provider.config(state)
    run_dir = Path(state["run_dir"])
    attempt = state.get("attempt", 0) + 1
    plan, report = state["plan"], state["data_report"]
    overrides = dict(state.get("overrides") or {})
    method = overrides.pop("method", None)
    # Plan choices (model, targets, budget, ...) were applied by the planner.
    overrides.pop("data_path", None)  # data_prep's, already applied
    overrides.pop("augment", None)
    overrides = {k: v for k, v in overrides.items() if k not in plan_keys()}
    out = run_dir / "train" / f"attempt-{attempt}"
    cfg = config_from_plan(
        plan,
        train_file=report["split_paths"]["train"],
        val_file=report["split_paths"].get("val"),
        output_dir=str(out),
        n_train=report["splits"]["train"],
        attempt=attempt,
        longest_example=(report.get("token_lengths") or {}).get("p100"),
        method=method,
    )
    cfg = apply_overrides(cfg, overrides)
    device = "cuda" if (state.get("hardware") or {}).get("gpus") else "cpu"
    model_cfg = base_model_config(cfg)
    # The prepared train split's token facts: the pre-flight measures the same file with
    # the same tokenizer, so its estimate is the one the config is fitted to here.
    from ftagent.tools.data.tokens import train_file_facts

    tokens = train_file_facts(cfg.train_file, cfg.model) if model_cfg else None
    fitted = ""
    if not {"batch_size", "grad_accum", "gradient_checkpointing"} & set(overrides):
        # The plan sized the run on the raw data; the split (with safety rows) may differ.
        from ftagent.tools.config.check import fit_to_budget

        cfg, fitted = fit_to_budget(cfg, model_cfg, plan.get("memory_budget_gb"), device,
                                    tokens)
    why = config_rationale(cfg, plan, report["splits"]["train"], attempt)
    if fitted:
        for key in ("batch_size", "grad_accum", "gradient_checkpointing"):
            why[key] = fitted
    for key in overrides:
        why[key] = "edited at a gate"
    findings = check_planned_config(cfg, plan, device, model_cfg, tokens)
    path = out / "config.yaml"
    text = dump_yaml(cfg, HEADER.format(run_id=state["run_id"], attempt=attempt, path=path), why)
    write_text(path, text)
    write_text(run_dir / "config.yaml", text)  # the current config, next to the plan
    return {
        "attempt": attempt,
        "config_path": str(path),
        "history": [
            {
                "node": "config",
                "attempt": attempt,
                "epochs": cfg.num_epochs,
                "learning_rate": cfg.learning_rate,
                "findings": [f.model_dump() for f in findings],
            }
        ],
    }
