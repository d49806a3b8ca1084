"""config: write the editable config.yaml for this attempt."""

from __future__ import annotations

from pathlib import Path

from tools.atomic import write_text
from tools.train_config import apply_overrides, default_config, dump_yaml

HEADER = """ftagent training config for run {run_id}, attempt {attempt}.
Edit and re-run with:  python -m tools.train {path}
"""


def config(state: dict) -> dict:
    run_dir = Path(state["run_dir"])
    attempt = state.get("attempt", 0) + 1
    plan, report = state["plan"], state["data_report"]
    overrides = dict(state.get("overrides") or {})
    out = run_dir / "train" / f"attempt-{attempt}"
    cfg = default_config(
        model=plan["model_path"],
        method=overrides.pop("method", plan["method"]),
        train_file=report["split_paths"]["train"],
        val_file=report["split_paths"].get("val"),
        output_dir=str(out),
        n_train=report["splits"]["train"],
        params=plan["params"],
        bf16=plan["precision"] == "bf16",
        attempt=attempt,
        longest_example=(report.get("token_lengths") or {}).get("p100"),
    )
    cfg = apply_overrides(cfg, overrides)
    path = out / "config.yaml"
    text = dump_yaml(cfg, HEADER.format(run_id=state["run_id"], attempt=attempt, path=path))
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
            }
        ],
    }
