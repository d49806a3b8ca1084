"""Work too big for this machine: which cluster shape, launcher and cost the plan
recommends instead.

When the plan for this machine does not fit its memory or would run past the deadline,
the same planning rules run again on common cluster shapes described from the GPU table
(`tools.gpus`), from one GPU up to eight nodes of eight H100s, with the person's goal,
data, model and constraints unchanged. The recommendation is the cheapest shape whose plan
fits and ends within the deadline (and the budget, if one is set); fewer GPUs break a tie.
The launcher: Slurm where `sbatch` is on this machine's PATH (a cluster's login node),
else SkyPilot (any cloud or Kubernetes).
"""

from __future__ import annotations

from ftagent.tools import gpus
from ftagent.tools.plan.decide import deadline_h
from ftagent.tools.plan.rules import make_plan
from ftagent.tools.plan.types import Item, Plan, PlanInputs, ScaleOut

# (GPU, GPUs per node, nodes), smallest first.
SHAPES = (("L4", 1, 1), ("A100-80GB", 1, 1), ("H100-80GB", 1, 1), ("A100-80GB", 8, 1),
          ("H100-80GB", 8, 1), ("H100-80GB", 8, 2), ("H100-80GB", 8, 4), ("H100-80GB", 8, 8))


def too_big(plan: Plan, inputs: PlanInputs) -> str | None:
    """Why this machine will not do (memory, time), or None."""
    limit = deadline_h(inputs.constraints, inputs.hardware)
    if not plan.fits:
        return (f"{plan.model} with {plan.method.upper()} needs about "
                f"{plan.estimated_memory_gb:g} GB, more than the {plan.memory_budget_gb:g} GB "
                "usable here")
    if plan.estimates.train_hours > limit:
        return (f"training would take about {plan.estimates.train_hours:,.0f} h here, past "
                f"the {limit:g} h deadline")
    return None


def launch_commands(config: str, gpu: str, per_node: int, nodes: int) -> dict[str, str]:
    sky = f"{gpus.spec(gpu).sky}:{per_node}"
    more = f" --nodes {nodes}" if nodes > 1 else ""
    return {"skypilot": f"ftagent launch skypilot {config} --gpus {sky}{more}",
            "slurm": f"ftagent launch slurm {config} --nodes {nodes} --gpus-per-node {per_node}"}


def recommend(inputs: PlanInputs, plan: Plan, slurm_here: bool = False,
              config: str = "config.yaml") -> ScaleOut | None:
    """The cluster for work `plan` (made for `inputs.hardware`, this machine) is too big
    for, or None when this machine will do or no shape fits."""
    if inputs.hardware.described:
        return None
    why = too_big(plan, inputs)
    if why is None:
        return None
    c = inputs.constraints
    found = []
    for gpu, per_node, nodes in SHAPES:
        hw = gpus.described(f"{gpu}:{per_node}", nodes)
        # Any registry model: the cluster downloads what it trains.
        p = make_plan(inputs.model_copy(update={"hardware": hw, "candidates": None,
                                                "local_ids": []}))
        e = p.estimates
        if not p.fits or e.train_hours > deadline_h(c, hw):
            continue
        if c.budget_usd is not None and e.cost_usd > c.budget_usd:
            continue
        found.append((e.cost_usd, per_node * nodes, gpu, per_node, nodes, p))
    if not found:
        return None
    _, _, gpu, per_node, nodes, p = min(found, key=lambda f: f[:2])
    e = p.estimates
    return ScaleOut(
        why=why, gpu=gpu, gpus_per_node=per_node, nodes=nodes,
        launcher="slurm" if slurm_here else "skypilot", model=p.model, method=p.method,
        strategy=p.strategy, train_hours=e.train_hours, gpu_hours=e.gpu_hours,
        rate_usd_per_hour=e.rate_usd_per_hour, cost_usd=e.cost_usd,
        commands=launch_commands(config, gpu, per_node, nodes))


def scale_out_item(s: ScaleOut) -> Item:
    """The hardware section's line for it."""
    other = "slurm" if s.launcher == "skypilot" else "skypilot"
    where = "a cloud, through SkyPilot" if s.launcher == "skypilot" else "this Slurm cluster"
    return Item(
        text=f"Too big for this machine ({s.why}). Recommended: {s.shape} on {where}: "
             f"{s.model.split('/')[-1]} with {s.method.upper()} ({s.strategy}), about "
             f"{s.train_hours:.2g} h, {s.gpu_hours:.3g} GPU-hours x ${s.rate_usd_per_hour:g}/h "
             f"= ${s.cost_usd:,.2f}.",
        detail=f"`{s.commands[s.launcher]}` writes the job; {other}: "
               f"`{s.commands[other]}`. The plan on it: `ftagent plan ... --hardware "
               f"{s.gpu}:{s.gpus_per_node}{f' --nodes {s.nodes}' if s.nodes > 1 else ''}`.")
