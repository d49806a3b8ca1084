"""tester: base vs tuned on held-out data; the evaluation and safety gates."""

from __future__ import annotations

from pathlib import Path

from ftagent.agent.graph.gates import GATES, GateRequest
from ftagent.tools.evaluate.diagnose import Evidence, diagnose, proposed_changes
from ftagent.tools.evaluate.request import EvalRequest, run_evaluation
from ftagent.tools.evaluate.verdict import rows_markdown


def tester(state: dict) -> dict:
    if state.get("provider"):  # a provider's base model: agent/graph/nodes/provider.py
        from ftagent.agent.graph.nodes import provider

        return provider.tester(state)
    report = state["data_report"]
    out = Path(state["run_dir"]) / "eval"
    result, verdict = run_evaluation(EvalRequest(
        base_path=state["plan"]["model_path"],
        tuned_path=state["train_result"]["output"],
        test_file=report["split_paths"]["test"],
        out_dir=out,
        task_type=report["task_type"],
        labels=report["labels"],
        # the task's own training rows (without the safety mix), for the copy checks
        train_file=report["split_paths"].get("train_task") or report["split_paths"]["train"],
        targets=state["plan"]["targets"],
        bf16=state["plan"]["precision"] == "bf16",
    ))
    _copy_loss_curve(state, out)
    _keep_attempt_copy(out, state["attempt"])
    found = [] if verdict.targets_met else diagnose(evidence(state, result, verdict))
    changes = proposed_changes(found)
    v = verdict.model_dump()
    v["diagnoses"] = [d.model_dump() for d in found]
    v["proposed_changes"] = changes
    v["needs_data"] = any(d.route == "data_prep" for d in found)
    v["summary"] += "\n\n" + rows_markdown(verdict.rows)
    if found:
        v["summary"] += "\n\nDiagnosis:\n" + "\n".join(
            f"- {d.kind}: {d.evidence}. {d.action}"
            + (" (needs a data change)" if d.route == "data_prep" else "") for d in found)
        if changes:
            v["summary"] += "\nRetraining applies: " + ", ".join(
                f"{k}={val}" for k, val in changes.items())
        if v["needs_data"]:
            v["summary"] += ("\nFor a data change, edit this gate with data_path=<new file>: "
                             "the workflow prepares it and trains again.")
        if state.get("teacher") and {d.kind for d in found} & {"too_little_data", "imbalanced"}:
            v["summary"] += ("\nWith the teacher: edit this gate with augment=true (or a "
                             "number of examples per label): it writes more examples for the "
                             "labels that fall short, and the workflow trains again.")
    update = {
        "eval_report": result.model_dump(),
        "verdict": v,
        "history": [{"node": "tester", "attempt": state["attempt"],
                     **verdict.model_dump(exclude={"rows"}),
                     "diagnoses": [d.kind for d in found]}],
    }
    if changes:  # a retrain (automatic, or a reject at the gate) trains with them
        update["overrides"] = changes
    return update


def _copy_loss_curve(state: dict, eval_dir: Path) -> None:
    """The training loss curve next to the metric bars, for one look at both."""
    import shutil

    src = Path(state["train_result"].get("loss_plot") or "")
    if src.is_file():
        shutil.copy2(src, eval_dir / "loss.png")


def evidence(state: dict, result, verdict=None) -> Evidence:
    """What the diagnosis rules read, from this attempt's training log, the evaluation
    and the data report."""
    from ftagent.tools.config.train_config import load_config
    from ftagent.tools.train.metrics import current_rows, read_metrics

    cfg = load_config(state["config_path"])
    rows = current_rows(read_metrics(cfg.output_dir))
    report = state["data_report"]
    t = result.tuned
    return Evidence(
        train_losses=[r["loss"] for r in rows if "loss" in r],
        eval_losses=[r["eval_loss"] for r in rows if "eval_loss" in r],
        base_loss=result.base.loss, tuned_loss=t.loss,
        unparsable_share=t.unparsable_share, json_compliance=t.json_compliance,
        primary_metric=result.primary_metric,
        base_primary=result.primary("base"), tuned_primary=result.primary("tuned"),
        n_train=report["splits"]["train"],
        label_counts=report.get("label_counts") or {},
        num_epochs=cfg.num_epochs, learning_rate=cfg.learning_rate,
        lora_r=cfg.lora.r if cfg.method in ("lora", "qlora") else None,
        floors_missed={r.metric: (r.tuned, r.floor) for r in (verdict.rows if verdict else [])
                       if r.floor is not None and r.met is False},
    )


def _keep_attempt_copy(eval_dir: Path, attempt: int) -> None:
    """eval/ holds the latest attempt's report; eval/attempt-N keeps each for comparison."""
    import shutil

    dest = eval_dir / f"attempt-{attempt}"
    dest.mkdir(parents=True, exist_ok=True)
    for f in eval_dir.iterdir():
        if f.is_file():
            shutil.copy2(f, dest / f.name)


def evaluation_request(state: dict) -> GateRequest:
    v = state["verdict"]
    return GateRequest(
        gate="evaluation",
        title=GATES["evaluation"],
        question="Accept these results?" if v["targets_met"] else (
            "Targets missed. Approve to accept anyway, reject to retrain with the proposed "
            "changes, or edit them."),
        passed=v["targets_met"],
        summary=v["summary"],
        evidence={
            "report": str(Path(state["run_dir"]) / "eval" / "report.md"),
            "attempt": state["attempt"],
            "max_attempts": state["max_attempts"],
            "diagnoses": v.get("diagnoses", []),
            "proposed_changes": v.get("proposed_changes", {}),
            "needs_data": v.get("needs_data", False),
            "samples": (state.get("eval_report") or {}).get("samples", [])[:5],
            "targets": v.get("rows", []),
            "plots": [str(Path(state["run_dir"]) / "eval" / f)
                      for f in ("metrics.png", "loss.png")],
        },
    )


def safety_request(state: dict) -> GateRequest:
    v = state["verdict"]
    return GateRequest(
        gate="safety",
        title=GATES["safety"],
        question=v.get("safety_question") or "Deploy?",
        passed=v["safe"],
        summary=v["safety_summary"],
        evidence={
            "report": str(Path(state["run_dir"]) / "eval" / "report.md"),
            # What a policy file tests (harmful_refusal >= 0.5, ...): base and tuned rates.
            "scores": {which: {k: (state.get("eval_report") or {}).get(which, {}).get(k)
                               for k in ("refusal_rate", "over_refusal_rate",
                                         "harmful_compliance")}
                       for which in ("base", "tuned")},
            "samples": [a for a in (state.get("eval_report") or {}).get("probe_samples", [])
                        if a.get("model") == "tuned" and a.get("kind") == "harmful"][:5],
        },
    )
