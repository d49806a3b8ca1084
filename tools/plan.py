"""The planner's rules: pick a method from data, model size and memory, and say why.

Pure logic: every input is a plain value, so the rules are testable without a model.
"""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

from tools.estimate import Shape, estimate, shape_from_config
from tools.hardware import Hardware


class ModelFacts(BaseModel):
    params: int
    hidden_size: int
    num_layers: int
    max_context: int
    architecture: str
    shape: Shape


class Targets(BaseModel):
    primary_metric: str
    min_gain: float = 0.05  # tuned must beat base by this much on the primary metric
    loss_must_drop: bool = True


class Plan(BaseModel):
    goal: str
    task_type: str
    n_examples: int
    method: str
    model: str
    precision: str
    estimated_memory_gb: float
    memory_budget_gb: float
    targets: Targets
    reasons: list[str]
    notes: list[str] = []


def model_facts(model_dir: str | Path) -> ModelFacts:
    """Parameter count and shape from config.json alone (no weights loaded)."""
    cfg = json.loads((Path(model_dir) / "config.json").read_text())
    shape = shape_from_config(cfg)
    return ModelFacts(
        params=shape.params,
        hidden_size=shape.hidden_size,
        num_layers=shape.num_layers,
        max_context=cfg.get("max_position_embeddings", 2048),
        architecture=(cfg.get("architectures") or ["?"])[0],
        shape=shape,
    )


def memory_gb(
    facts: ModelFacts, method: str, precision: str, device: str, batch: int = 8, seq: int = 512
) -> float:
    """Peak training memory from `tools.estimate` (formula and measured error there)."""
    return estimate(facts.shape, method, precision, batch, seq, device=device).total_gb


def make_plan(
    goal: str, task_type: str, n_examples: int, model: str, facts: ModelFacts, hw: Hardware
) -> Plan:
    gpu_bf16 = bool(hw.gpus and hw.gpus[0].bf16)
    precision = "bf16" if gpu_bf16 or (not hw.gpus and hw.cpu_bf16) else "fp32"
    budget = hw.memory_budget_gb
    where = hw.gpus[0].name if hw.gpus else f"{hw.cpu_cores}-core CPU"
    size = f"{facts.params / 1e6:.0f}M-parameter {facts.architecture}"
    device = "cuda" if hw.gpus else "cpu"
    lora_mem = memory_gb(facts, "lora", precision, device)
    reasons = [f"{n_examples} examples, {task_type} task, {size} on {where} ({budget} GB usable)."]
    if lora_mem <= budget:
        method, mem = "lora", lora_mem
        reasons.append(
            f"LoRA fits: about {lora_mem} GB at batch 8 x 512 tokens with the base frozen in "
            f"{precision}; it trains a "
            "small adapter, keeps the base intact and is the safe default."
        )
    else:
        method, mem = "qlora", memory_gb(facts, "qlora", precision, device)
        reasons.append(
            f"LoRA would need about {lora_mem} GB, more than {budget} GB: QLoRA (4-bit nf4 "
            f"base) needs about {mem} GB."
        )
    if precision == "bf16":
        reasons.append(
            "bfloat16 compute: the hardware supports it natively (faster, half the memory)."
        )
    metric = "accuracy" if task_type == "classification" else "exact_match"
    notes = []
    if n_examples < 50:
        notes.append("Very little data: few-shot prompting may be enough; try it before training.")
    return Plan(
        goal=goal,
        task_type=task_type,
        n_examples=n_examples,
        method=method,
        model=model,
        precision=precision,
        estimated_memory_gb=mem,
        memory_budget_gb=budget,
        targets=Targets(primary_metric=metric),
        reasons=reasons,
        notes=notes,
    )


def plan_markdown(p: Plan) -> str:
    from prompts import load

    return load("plan.md").format(
        goal=p.goal,
        task_type=p.task_type,
        n_examples=p.n_examples,
        model=p.model,
        method=p.method.upper(),
        precision=p.precision,
        estimated_memory_gb=p.estimated_memory_gb,
        memory_budget_gb=p.memory_budget_gb,
        metric=p.targets.primary_metric,
        min_gain=p.targets.min_gain,
        loss_target=", and held-out loss drops" if p.targets.loss_must_drop else "",
        reasons="\n".join(f"- {r}" for r in p.reasons),
        notes=("\n## Notes\n" + "\n".join(f"- {n}" for n in p.notes)) if p.notes else "",
    )
