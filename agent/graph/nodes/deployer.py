"""deployer: merge, verify, export and serve the tuned model; the deployment gate."""

from __future__ import annotations

from pathlib import Path

from ftagent.agent.graph.gates import GATES, GateRequest
from ftagent.tools.data.tokens import conversation
from ftagent.tools.evaluate.compare import answer_tokens, read_rows


def deployer(state: dict) -> dict:
    if state.get("provider"):  # a provider's base model: agent/graph/nodes/provider.py
        from ftagent.agent.graph.nodes import provider

        return provider.deployer(state)
    from ftagent.tools.config.train_config import load_config
    from ftagent.tools.deploy.pipeline import deploy

    run_dir = Path(state["run_dir"])
    report, plan = state["data_report"], state["plan"]
    rows = [{"messages": conversation(r)} for r in read_rows(report["split_paths"]["test"])]
    samples = (state.get("eval_report") or {}).get("samples") or []
    cfg = load_config(state["config_path"]).model_dump() if state.get("config_path") else None
    result = deploy(
        plan["model_path"], state["train_result"]["output"], run_dir, rows,
        answer_budget(state, report),
        name=f"ftagent-{state['run_id']}", bf16=plan["precision"] == "bf16",
        serve_prompts=max(len(samples), 5),
        card={"base": {"name": plan.get("model"), "path": plan["model_path"],
                       "licence": (plan.get("model_card") or {}).get("licence")},
              "method": plan.get("method"), "goal": state.get("goal"),
              "data": {"source": report.get("source"), "schema": report.get("schema_detail"),
                       "sha256": report.get("sha256"), "rows": report.get("kept"),
                       "splits": report.get("splits"),
                       "split_sha256": report.get("split_sha256")},
              "config": cfg, "eval_report": state.get("eval_report")},
    )
    d = result.model_dump()
    load = result.load_check or {}
    # What the earlier (merge-only) deployment reported, kept for readers of the state.
    d.update(prompt=rows[0]["messages"][-2]["content"], answer=load.get("answer", ""),
             new_tokens=load.get("new_tokens", 0), error="; ".join(result.problems))
    return {"deployment": d, "history": [{"node": "deployer", "ok": result.ok}]}


def answer_budget(state: dict, report: dict) -> int:
    """The new-token budget the tester gave both models, so the serving and llama.cpp checks
    compare answers of the same length (estimated from the labels for older reports)."""
    budget = (state.get("eval_report") or {}).get("max_new_tokens")
    return budget or answer_tokens(report["task_type"], report.get("labels") or [])


def deployment_request(state: dict) -> GateRequest:
    if state.get("provider"):  # a provider's base model: agent/graph/nodes/provider.py
        from ftagent.agent.graph.nodes import provider

        return provider.deployment_request(state)
    from ftagent.tools.deploy.pipeline import DeployReport

    d = state["deployment"]
    r = DeployReport.model_validate({k: v for k, v in d.items()
                                     if k in DeployReport.model_fields})
    return GateRequest(
        gate="deployment",
        title=GATES["deployment"],
        question="Merged, exported and served. Mark the deployment done?" if r.ok else
        "Deployment checks failed (see problems). Approve anyway, or reject?",
        passed=r.ok,
        summary=f"Merged model at {r.merged}.\n{r.summary()}\nModel card: {r.model_card}",
        evidence={k: d.get(k) for k in ("merged", "adapter", "gguf", "llama_cpp", "served",
                                        "vllm", "ollama", "model_card", "seconds",
                                        "problems")},
    )
