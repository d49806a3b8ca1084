"""planner: goal + data + hardware -> plan.md, plan.json and the strategy gate.

A rejected plan comes back here with the person's reason (the rules read it: "too slow",
"use QLoRA", "permissive licence only", ...); an edited plan comes back with its choices
(method, model, targets) fixed."""

from __future__ import annotations

from pathlib import Path

from ftagent.agent.graph.gates import GATES, GateRequest, plan_keys
from ftagent.tools.atomic import write_json, write_text
from ftagent.tools.plan.planner import plan_for
from ftagent.tools.plan.report import plan_markdown
from ftagent.tools.plan.types import Constraints, ScaleOut
from ftagent.tools.teacher.distill import estimate_file as teacher_estimate
from ftagent.tools.teacher.settings import TeacherSettings

RUNNABLE = {"sft", "dpo"}  # objectives the trainer and tester run today


def strategy_feedback(state: dict) -> list[str | dict]:
    """Reasons of rejected plans and plan choices edited, oldest first."""
    out: list[str | dict] = []
    for record in state.get("history") or []:
        if record.get("gate") != "strategy":
            continue
        if record["action"] == "reject" and record.get("reason"):
            out.append(record["reason"])
        if record["action"] == "edit":
            choices = {k: v for k, v in record["changes"].items() if k in plan_keys()}
            if choices:
                out.append(choices)
    return out


def scale_out_job(run_dir: Path, s: ScaleOut, model: str) -> dict:
    """The job file the recommended launcher writes for this run's first attempt, written
    now (into `launch/`) so the strategy gate can show it. Its config, data and output
    folder are where the workflow will put them; the command returned writes it again from
    that config once the config step has run."""
    from importlib.metadata import version

    from ftagent.tools import gpus
    from ftagent.tools.plan.scale_out import launch_commands
    from ftagent.tools.train import skypilot
    from ftagent.tools.train.slurm import SCRIPT_FILE, SlurmJob, sbatch_script

    attempt = run_dir / "train" / "attempt-1"
    config = attempt / "config.yaml"
    folder = run_dir / "launch"
    if s.launcher == "slurm":
        name = SCRIPT_FILE
        text = sbatch_script(config, attempt, SlurmJob(nodes=s.nodes,
                             gpus_per_node=s.gpus_per_node), Path.cwd())
    else:
        name = skypilot.TASK_FILE
        task_name, bucket = skypilot.default_names(attempt)
        job = skypilot.SkyJob(name=task_name, bucket=bucket, nodes=s.nodes,
                              gpus=f"{gpus.spec(s.gpu).sky}:{s.gpus_per_node}")
        mounts, _, hub = skypilot.node_inputs(str(run_dir / "data" / "train.jsonl"),
                                              str(run_dir / "data" / "val.jsonl"), model,
                                              folder / skypilot.INPUTS)
        text = skypilot.task_yaml(job, mounts, skypilot.source_folder(), version("ftagent"),
                                  hub, accelerate_config=job.per_node * job.nodes > 1,
                                  config_path=str(config))
    path = write_text(folder / name, text)
    command = launch_commands(str(config), s.gpu, s.gpus_per_node, s.nodes)[s.launcher]
    return {"launcher": s.launcher, "path": str(path), "command": command, "text": text}


def planner(state: dict) -> dict:
    if state.get("provider"):  # a provider's base model: agent/graph/nodes/provider.py
        from ftagent.agent.graph.nodes import provider

        return provider.planner(state)
    run_dir = Path(state["run_dir"])
    previous = (state.get("plan") or {}).get("model")
    planned = plan_for(
        state["goal"], state["data_path"], state.get("model"), run_dir,
        constraints=Constraints(**(state.get("constraints") or {})),
        feedback=strategy_feedback(state), previous_model=previous, require_local=True,
        config=str(run_dir / "train" / "attempt-1" / "config.yaml"),
    )
    plan = planned.plan
    job = None
    if plan.scale_out is not None:
        job = scale_out_job(run_dir, plan.scale_out,
                            str(planned.model_path) if planned.model_path else plan.model)
    teacher = (teacher_estimate(TeacherSettings(**state["teacher"]), state["data_path"])
               if plan.method == "distillation" and state.get("teacher") else None)
    write_text(run_dir / "plan.md", plan_markdown(plan))
    write_json(run_dir / "plan.json", plan.model_dump())
    return {
        "hardware": planned.hardware.model_dump(),
        "plan": plan.model_dump()
        | {
            "model_path": str(planned.model_path) if planned.model_path else None,
            "params": planned.params,
            "max_context": planned.max_context,
            "teacher_estimate": teacher,
            "scale_out_job": job,
        },
        "history": [{"node": "planner", "method": plan.method, "model": plan.model,
                     "task_type": plan.task_type, "feedback_applied": plan.feedback_applied}],
    }


def strategy_request(state: dict) -> GateRequest:
    if state.get("provider"):  # a provider's base model: agent/graph/nodes/provider.py
        from ftagent.agent.graph.nodes import provider

        return provider.strategy_request(state)
    plan = state["plan"]
    problems = list(plan.get("warnings") or [])
    if not plan.get("model_path"):
        problems.append(f"{plan['model']} is not on this machine: download it, or edit the "
                        "plan with model=<a local folder>.")
    if plan["objective"] not in RUNNABLE:
        problems.append(f"{plan['objective']} is not a training objective the workflow runs.")
    teacher = plan.get("teacher_estimate")
    reasons = list(plan["reasons"])
    if plan["method"] == "distillation" and not state.get("teacher"):
        problems.append(
            "distillation needs a teacher to answer the prompts: start the run with --teacher "
            "MODEL --teacher-url URL (an OpenAI-compatible endpoint) or --teacher FOLDER.")
    elif plan["method"] == "distillation" and teacher and teacher.get("problem"):
        problems.append(teacher["problem"])
    elif plan["method"] == "distillation" and teacher:
        cost = (f", at most ${teacher['cost_usd_at_most']:.4f}"
                if teacher.get("cost_usd_at_most") else " (no price set: free or local)")
        reasons.append(
            f"Teacher {teacher['teacher']}: {teacher['requests']} requests for "
            f"{teacher['prompts']} prompts ({teacher['cached']} already cached), "
            f"~{teacher['prompt_tokens']:,} prompt tokens, at most "
            f"{teacher['answer_tokens_at_most']:,} answer tokens{cost}.")
    job = plan.get("scale_out_job")
    if plan.get("scale_out") and job:
        s = plan["scale_out"]
        problems.append(
            f"Too big for this machine ({s['why']}): {s['nodes']} node(s) x "
            f"{s['gpus_per_node']} {s['gpu']} would train {s['model']} with "
            f"{s['method'].upper()} in about {s['train_hours']:.2g} h for "
            f"${s['cost_usd']:,.2f}. The {s['launcher']} job is in {job['path']}; once the "
            f"config is written, `{job['command']}` writes it for the run.")
    summary = " ".join(reasons + problems)
    return GateRequest(
        gate="strategy",
        title=GATES["strategy"],
        question=f"Train {plan['model']} with {plan['method'].upper()} for this goal?",
        passed=bool(plan["fits"]) and not problems,
        summary=summary,
        evidence={
            "plan": str(Path(state["run_dir"]) / "plan.md"),
            "method": plan["method"],
            "model": plan["model"],
            "targets": plan["targets"],
            "memory_gb": plan["estimated_memory_gb"],
            "usable_gb": plan["memory_budget_gb"],
            "cost_usd": plan["estimates"]["cost_usd"],
            "prompting_first": plan["prompting_first"],
            "teacher": teacher,
            "scale_out": plan.get("scale_out"),
            "scale_out_job": job,
        },
    )
