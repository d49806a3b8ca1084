"""data_prep: validate, fix on a copy and split the data; the dataset gate."""

from __future__ import annotations

from pathlib import Path

from ftagent.agent.graph.gates import GATES, GateRequest
from ftagent.tools.config.train_config import MAX_LENGTH_CAP
from ftagent.tools.data import PrepareOptions, prepare_dataset
from ftagent.tools.data.report import mix_summary
from ftagent.tools.data.safety_mix import mix_into_split
from ftagent.tools.teacher.augment_split import augment_split
from ftagent.tools.teacher.distill import distill
from ftagent.tools.teacher.distill import summary as generation_summary
from ftagent.tools.teacher.generate import progress_bar
from ftagent.tools.teacher.settings import TeacherSettings, default_cache

MIN_TRAIN = 8


def data_prep(state: dict) -> dict:
    if state.get("provider"):  # a provider's base model: agent/graph/nodes/provider.py
        from ftagent.agent.graph.nodes import provider

        return provider.data_prep(state)
    # The longest sequence training may use: the model's context, capped for memory.
    # config then sets max_length from the lengths actually found.
    limit = min(state["plan"].get("max_context") or MAX_LENGTH_CAP, MAX_LENGTH_CAP)
    opts = PrepareOptions(model=state["plan"]["model_path"], max_length=limit)
    run_dir = Path(state["run_dir"])
    data_path = (state.get("overrides") or {}).get("data_path") or state["data_path"]
    out = run_dir / "data"
    if state.get("data_report"):  # new data after an evaluation: keep the earlier split
        out = run_dir / f"data-{state.get('attempt', 0) + 1}"
    plan = state["plan"]
    generation = None
    if plan["method"] == "distillation" and state.get("teacher"):
        # The teacher answers the prompts; the student trains on what passed its checks.
        generation = distill(data_path, out / "teacher", TeacherSettings(**state["teacher"]),
                             default_cache(), on_progress=progress_bar("teacher answers"))
        data_path = generation["generated"]
    report = prepare_dataset(data_path, out, opts)
    augmented = None
    wanted = (state.get("overrides") or {}).get("augment")
    if wanted and state.get("teacher"):  # the evaluation gate asked for more examples
        target = None if wanted is True else int(wanted)
        report, augmented = augment_split(out, report, state["goal"],
                                          TeacherSettings(**state["teacher"]), default_cache(),
                                          target)
    report = mix_into_split(report, out, plan["model_path"], plan.get("safety_mix") or 0.0,
                            bf16=plan.get("precision") == "bf16")
    return {
        "data_path": str(data_path),
        "data_report": report.model_dump() | ({"generation": generation} if generation else {})
        | ({"augmentation": augmented} if augmented else {}),
        "history": [
            {
                "node": "data_prep",
                "data": str(data_path),
                "kept": report.kept,
                "dropped": report.examples_converted - report.kept,
            }
        ],
    }


def dataset_request(state: dict) -> GateRequest:
    r = state["data_report"]
    found = [f"{c['name']} ({c['severity']}): {c['count']}" for c in r["checks"] if c["count"]]
    errors = [c["name"] for c in r["checks"] if c["count"] and c["severity"] == "error"]
    mixed = (r.get("safety_mix") or {}).get("rows", 0)
    splits = ", ".join(f"{k} {n - mixed} + {mixed} safety rows" if k == "train" and mixed
                       else f"{k} {n}" for k, n in r["splits"].items())
    preview = r["preview"][0] if r.get("preview") else None
    learn = (
        (
            f" The model learns {preview['loss_tokens']} of {preview['total_tokens']} tokens "
            f"of the first example: {preview['loss']!r}."
        )
        if preview
        else ""
    )
    decide = f" Needs your decision: {', '.join(errors)}." if errors else ""
    made = f" {generation_summary(r['generation'])}" if r.get("generation") else ""
    if r.get("augmentation"):
        a = r["augmentation"]
        made += (f" The teacher added {a['added']} examples ({a['rejected']} set aside); per "
                 "label before -> after: " + ", ".join(
                     f"{k} {a['before'].get(k, 0)} -> {n}" for k, n in a["after"].items()) + ".")
    mix = (f" Safety mix: {mix_summary(r['safety_mix'])}; off with safety_mix=0 at the "
           "strategy gate or ftagent run --no-safety-mix." if r.get("safety_mix") else "")
    return GateRequest(
        gate="dataset",
        title=GATES["dataset"],
        question="Train on this data?",
        passed=not errors and r["splits"].get("train", 0) >= MIN_TRAIN,
        summary=(
            f"{r['rows_read']} rows read as {r['schema_detail']}; {r['kept']} examples kept "
            f"({splits}); task: {r['task_type']}. Found: {', '.join(found) or 'nothing'}."
            + made
            + decide
            + mix
            + learn
            + " "
            + " ".join(r["warnings"])
        ).strip(),
        evidence={
            "report": str(Path(state["run_dir"]) / "data" / "report.md"),
            "splits": r["splits"],
            "errors": errors,
            "found": found,
            "safety_mix": r.get("safety_mix"),
            "generation": r.get("generation"),
            "augmentation": r.get("augmentation"),
        },
    )
