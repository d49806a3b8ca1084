"""The workflow's nodes when the base model is a provider's (the run's `provider`
settings: an OpenAI model, or an OpenAI-compatible fine-tuning endpoint). Each node of
the local path hands over to its namesake here; the graph and its gates are the same.

planner: plan.md with the job's method, hyperparameters and cost -> [strategy];
data_prep: split and check as always, then the provider's JSONL (chat lines, or DPO lines
for preference pairs), checked line by line -> [dataset]; config: the job's method and
hyperparameters (the plan's, gate edits on top);
trainer: upload, create, follow (events and progress into the run's events), cancel when
stopped -> [training]; tester: base vs tuned through the chat endpoint -> [evaluation],
[safety]; deployer: record the tuned model's id and write its card -> [deployment].
"""

from __future__ import annotations

from pathlib import Path

from ftagent.agent.graph.gates import GATES, GateRequest, plan_keys
from ftagent.agent.graph.stop import STOP_REQUESTED
from ftagent.tools.atomic import write_json, write_text
from ftagent.tools.provider.settings import ProviderSettings

JOB_FILE = "provider_job.yaml"


def settings(state: dict) -> ProviderSettings:
    return ProviderSettings(**state["provider"])


def job_method(plan: dict) -> str:
    """The provider's name for the plan's objective: dpo for preference pairs."""
    return "dpo" if plan.get("objective") == "dpo" else "supervised"


def planner(state: dict) -> dict:
    from ftagent.tools.plan.types import Constraints
    from ftagent.tools.provider.plan import provider_plan, provider_plan_markdown

    run_dir = Path(state["run_dir"])
    constraints = Constraints(**(state.get("constraints") or {}))
    for record in state.get("history") or []:  # plan choices edited at the strategy gate
        if record.get("gate") == "strategy" and record.get("action") == "edit":
            edited = {k: v for k, v in record["changes"].items() if k in plan_keys()}
            constraints = constraints.model_copy(update=edited)
    plan = provider_plan(state["goal"], state["data_path"], settings(state), constraints)
    write_text(run_dir / "plan.md", provider_plan_markdown(plan))
    write_json(run_dir / "plan.json", plan.model_dump())
    return {
        "plan": plan.model_dump() | {"model_path": None, "precision": "provider",
                                     "safety_mix": 0.0, "max_context": None},
        "history": [{"node": "planner", "method": "provider", "model": plan.model,
                     "task_type": plan.task_type, "cost_usd": plan.cost_usd}],
    }


def strategy_request(state: dict) -> GateRequest:
    plan = state["plan"]
    cost = (f"${plan['cost_usd']:.2f}" if plan.get("cost_usd") is not None else
            "unknown")
    return GateRequest(
        gate="strategy", title=GATES["strategy"],
        question=f"Fine-tune {plan['model']} at {plan['provider']['base_url'] or 'OpenAI'} "
                 f"(estimated cost {cost})?",
        passed=bool(plan["fits"]), summary=" ".join(plan["reasons"] + plan["warnings"]),
        evidence={"plan": str(Path(state["run_dir"]) / "plan.md"), "method": "provider",
                  "model": plan["model"], "endpoint": plan["provider"]["base_url"],
                  "hyperparameters": plan["hyperparameters"], "targets": plan["targets"],
                  "cost_usd": plan.get("cost_usd"), "tokens": plan["tokens_per_epoch"]},
    )


def data_prep(state: dict) -> dict:
    from ftagent.tools.config.imported import ConfigImportError
    from ftagent.tools.data import PrepareOptions, prepare_dataset
    from ftagent.tools.provider.files import training_cost, write_provider_file

    run_dir = Path(state["run_dir"])
    data_path = (state.get("overrides") or {}).get("data_path") or state["data_path"]
    out = run_dir / "data"
    if state.get("data_report"):  # new data after an evaluation: keep the earlier split
        out = run_dir / f"data-{state.get('attempt', 0) + 1}"
    report = prepare_dataset(data_path, out, PrepareOptions()).model_dump()
    plan = state["plan"]
    method = job_method(plan)
    files = {}
    for split, param in (("train", "training_file"), ("val", "validation_file")):
        if report["split_paths"].get(split):
            try:
                files[param] = write_provider_file(
                    report["split_paths"][split], out / "provider" / f"{split}.jsonl",
                    f"provider {param} {out / 'provider' / f'{split}.jsonl'}",
                    method).model_dump()
            except ConfigImportError as exc:
                raise ValueError(f"the {split} split does not pass the provider's "
                                 f"checks: {exc}") from None
    epochs = plan["hyperparameters"]["n_epochs"]
    tokens = files["training_file"]["tokens"]
    report["provider_files"] = files
    report["provider_cost_usd"] = training_cost(tokens, epochs, plan.get("usd_per_mtok"))
    counts = ", ".join(f"{k} {v['examples']} rows" for k, v in files.items())
    report["warnings"] = [*report["warnings"], (
        f"Provider files: {counts}, checked line by line as OpenAI's "
        + ("preference (DPO)" if method == "dpo" else "chat") + " format; "
        f"~{tokens:,} training tokens an epoch"
        + (f", ~${report['provider_cost_usd']:.2f} for {epochs} epochs"
           if report["provider_cost_usd"] is not None else "") + ". No safety rows "
        "are mixed in for a provider model (the safety gate still probes it).")]
    return {
        "data_path": str(data_path), "data_report": report,
        "history": [{"node": "data_prep", "data": str(data_path), "kept": report["kept"],
                     "dropped": report["examples_converted"] - report["kept"]}],
    }


def job_hyperparameters(plan_hyper: dict, overrides: dict) -> tuple[dict, list[str]]:
    """The plan's job hyperparameters with config edits made at gates: num_epochs,
    batch_size x grad_accum, learning_rate as multiplier x 2e-4 (ftagent's mapping, the
    inverse of `ftagent serve --fine-tuning`'s), dpo_beta as a DPO job's beta, seed. Other
    keys mean nothing to a provider job and are named as ignored."""
    from ftagent.tools.config.openai_jobs import OPENAI_BASE_LR

    hyper, ignored = dict(plan_hyper), []
    for key, value in overrides.items():
        if key == "num_epochs":
            hyper["n_epochs"] = int(value)
        elif key in ("batch_size", "grad_accum"):  # the provider's batch is the effective one
            planned = hyper["batch_size"] if isinstance(hyper["batch_size"], int) else 1
            hyper["batch_size"] = (int(overrides.get("batch_size", planned))
                                   * int(overrides.get("grad_accum", 1)))
        elif key == "learning_rate":
            hyper["learning_rate_multiplier"] = round(float(value) / OPENAI_BASE_LR, 6)
        elif key == "dpo_beta" and "beta" in hyper:  # only a DPO job has a beta
            hyper["beta"] = float(value)
        elif key not in ("seed", "data_path", "augment") and key not in plan_keys():
            ignored.append(key)
    return hyper, ignored


def config(state: dict) -> dict:
    import yaml

    run_dir = Path(state["run_dir"])
    attempt = state.get("attempt", 0) + 1
    overrides = dict(state.get("overrides") or {})
    hyper, ignored = job_hyperparameters(state["plan"]["hyperparameters"], overrides)
    job = {"model": state["plan"]["model"], "endpoint": state["provider"].get("base_url"),
           "method": job_method(state["plan"]), "hyperparameters": hyper,
           "seed": int(overrides.get("seed", 42)),
           "suffix": f"ftagent-{attempt}", "files": {
               k: v["path"] for k, v in state["data_report"]["provider_files"].items()}}
    text = (f"# ftagent provider job for run {state['run_id']}, attempt {attempt}: the "
            "plan's hyperparameters with gate edits on top.\n"
            + (f"# ignored for a provider job: {', '.join(ignored)}\n" if ignored else "")
            + yaml.safe_dump(job, sort_keys=False))
    out = run_dir / "train" / f"attempt-{attempt}"
    write_text(out / JOB_FILE, text)
    write_text(run_dir / JOB_FILE, text)
    return {"attempt": attempt, "provider_job": job | {"dir": str(out)},
            "history": [{"node": "config", "attempt": attempt,
                         "epochs": hyper["n_epochs"],
                         "learning_rate": hyper["learning_rate_multiplier"],
                         "ignored": ignored}]}


def trainer(state: dict) -> dict:
    from ftagent.tools.provider.jobs import run_job
    from langgraph.config import get_stream_writer

    write = get_stream_writer()
    job = state["provider_job"]

    def emit(event: dict) -> None:
        write({**event, "attempt": state["attempt"]})

    result = run_job(settings(state), job["files"], job["hyperparameters"], job["suffix"],
                     job["seed"], job["dir"], emit, stop=STOP_REQUESTED,
                     method=job.get("method", "supervised"))
    return {"train_result": result,
            "history": [{"node": "trainer", "steps": result["global_step"],
                         "train_loss": result["train_loss"] or 0.0,
                         "model": result["fine_tuned_model"]}]}


def _timeline_text(timeline: list[dict]) -> str:
    from datetime import UTC, datetime

    return ", ".join(f"{t['status']} {datetime.fromtimestamp(t['time'], UTC):%H:%M:%S}"
                     for t in timeline)


def training_request(state: dict) -> GateRequest:
    r = state["train_result"]
    loss = f", last training loss {r['train_loss']:.4f}" if r.get("train_loss") else ""
    return GateRequest(
        gate="training", title=GATES["training"],
        question="The provider job succeeded. Evaluate the tuned model?",
        passed=bool(r.get("fine_tuned_model")),
        summary=(f"Provider job {r['provider_job']} made {r['fine_tuned_model']}: "
                 f"{r['global_step']} steps{loss}; trained tokens "
                 f"{r.get('trained_tokens') or 'not reported'}. Timeline: "
                 f"{_timeline_text(r['timeline'])}."),
        evidence={k: r.get(k) for k in ("provider_job", "fine_tuned_model", "global_step",
                                        "train_loss", "eval_loss", "trained_tokens",
                                        "hyperparameters", "timeline", "result_files")},
    )


def tester(state: dict) -> dict:
    from ftagent.tools.evaluate.verdict import rows_markdown
    from ftagent.tools.provider.evaluate import evaluate_endpoint

    report = state["data_report"]
    out = Path(state["run_dir"]) / "eval"
    result, verdict = evaluate_endpoint(
        settings(state), state["train_result"]["fine_tuned_model"],
        report["split_paths"]["test"], out, report["task_type"], report["labels"],
        train_file=report["split_paths"]["train"], targets=state["plan"]["targets"])
    v = verdict.model_dump()
    v.update(diagnoses=[], proposed_changes={}, needs_data=False)  # a person decides
    v["summary"] += "\n\n" + rows_markdown(verdict.rows) + "\n\n" + " ".join(verdict.warnings)
    return {"eval_report": result.model_dump(), "verdict": v,
            "history": [{"node": "tester", "attempt": state["attempt"],
                         **verdict.model_dump(exclude={"rows"}), "diagnoses": []}]}


def deployer(state: dict) -> dict:
    from ftagent.tools.provider.card import write_provider_card

    run_dir = Path(state["run_dir"])
    r, plan, report = state["train_result"], state["plan"], state["data_report"]
    card = write_provider_card(
        run_dir / "model", r["fine_tuned_model"], settings(state), goal=state.get("goal"),
        job=r, data={"source": report.get("source"), "schema": report.get("schema_detail"),
                     "sha256": report.get("sha256"), "rows": report.get("kept"),
                     "splits": report.get("splits"),
                     "split_sha256": report.get("split_sha256")},
        eval_report=state.get("eval_report"), cost_usd=report.get("provider_cost_usd")
        if report.get("provider_cost_usd") is not None else plan.get("cost_usd"))
    d = {"ok": True, "model_id": r["fine_tuned_model"], "provider_job": r["provider_job"],
         "endpoint": ProviderSettings(**state["provider"]).url, "model_card": str(card),
         "problems": []}
    write_json(run_dir / "model" / "deployment.json", d)
    return {"deployment": d, "history": [{"node": "deployer", "ok": True,
                                          "model": r["fine_tuned_model"]}]}


def deployment_request(state: dict) -> GateRequest:
    d = state["deployment"]
    return GateRequest(
        gate="deployment", title=GATES["deployment"],
        question="The tuned model is served by the provider. Mark the deployment done?",
        passed=d["ok"],
        summary=(f"{d['model_id']} is served at {d['endpoint']} (job {d['provider_job']}); "
                 f"nothing to merge or export. Model card: {d['model_card']}"),
        evidence={k: d.get(k) for k in ("model_id", "endpoint", "provider_job",
                                        "model_card")},
    )
