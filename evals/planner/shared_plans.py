"""Plan every dataset in ../shared/data (and the demo data) on this machine, write each
plan.md, and print one table to review: `python -m evals.planner.shared_plans [--out DIR]`.

It plans twice per dataset: with the models on this machine (what `ftagent run` would
train) and with the whole registry (what to train with the hardware at hand)."""

from __future__ import annotations

import argparse
from pathlib import Path

from rich.console import Console
from rich.table import Table

ROOT = Path(__file__).resolve().parents[2]
SHARED = ROOT.parent / "shared" / "data"
GOALS = {
    "demo": ("tools/bundled/demo/support_intents.jsonl",
             "customer support assistant that routes banking questions to the right intent"),
    "banking77": ("banking77/train.jsonl", "route banking customer messages to one of 77 intents"),
    "self_instruct": ("self_instruct/seed_tasks.jsonl",
                      "an assistant that follows everyday instructions"),
    "hh_rlhf": ("hh_rlhf_harmless_base/train.jsonl",
                "make the assistant more harmless: prefer the safer answer"),
    "sgd": ("sgd/train.jsonl", "a booking assistant for multi-turn conversations"),
    "xstest": ("xstest/prompts.jsonl", "label prompts as safe or unsafe"),
    "arc_easy": ("arc_easy/validation.jsonl", "answer grade-school science questions"),
    "piqa": ("piqa/validation.jsonl", "pick the sensible solution to everyday physical goals"),
    "advbench": ("advbench/harmful_behaviors.jsonl", "refuse harmful requests"),
}


def main() -> int:
    from ftagent.tools.data import DataError
    from ftagent.tools.plan.planner import plan_for
    from ftagent.tools.plan.report import plan_markdown
    from ftagent.tools.quiet import quiet_libraries

    quiet_libraries()
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--out", type=Path, default=ROOT / "runs" / "shared-plans")
    args = ap.parse_args()
    table = Table(title="Plans for the shared datasets on this machine")
    for col in ("data", "n", "task", "prompt 1st", "local: method / model", "GB",
                "registry pick", "warnings"):
        table.add_column(col, overflow="fold")
    for name, (rel, goal) in GOALS.items():
        path = ROOT / rel if name == "demo" else SHARED / rel
        try:
            local = plan_for(goal, path, require_local=True).plan
            best = plan_for(goal, path).plan
        except DataError as exc:
            table.add_row(name, "", "", "", f"error: {exc}", "", "", "")
            continue
        args.out.mkdir(parents=True, exist_ok=True)
        (args.out / f"{name}.md").write_text(plan_markdown(best), encoding="utf-8")
        (args.out / f"{name}-local.md").write_text(plan_markdown(local), encoding="utf-8")
        table.add_row(
            name, f"{local.n_examples:,}", local.task_type, "yes" if local.prompting_first else "",
            f"{local.method} / {local.model.split('/')[-1]}", f"{local.estimated_memory_gb:g}",
            f"{best.method} / {best.model.split('/')[-1]}",
            "; ".join(local.warnings)[:120],
        )
    Console(width=200).print(table)
    print(f"plans written to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
