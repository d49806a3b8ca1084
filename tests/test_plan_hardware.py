"""Planning for hardware the person does not have at hand (`ftagent plan --hardware
H100-80GB:8 --nodes 2`): the GPU table, and the same estimator, cost and time on it."""

from __future__ import annotations

import json
import subprocess

import pytest
from ftagent.tools import gpus
from ftagent.tools.data.facts import DataFacts
from ftagent.tools.hardware import Hardware
from ftagent.tools.plan.rules import make_plan
from ftagent.tools.plan.types import Constraints, PlanInputs
from ftagent.tools.registry import lookup

# 50,000 knowledge-heavy chats of ~600 tokens.
KNOWLEDGE = DataFacts(n_examples=50_000, tokens_p50=600, tokens_p99=1800, tokens_max=2000,
                      prompt_tokens_p50=200, answer_tokens_p50=400)
GOAL = "answer questions about our product documentation"


def _plan(hw, data=KNOWLEDGE, **kw):
    return make_plan(PlanInputs(goal=GOAL, data=data, hardware=hw,
                                model=lookup("meta-llama/Llama-3.1-8B-Instruct"), **kw))


def test_device_names_find_their_row():
    for name, key in (("NVIDIA H100 80GB HBM3", "H100-80GB"), ("NVIDIA H100 PCIe", "H100-PCIe"),
                      ("NVIDIA A100-SXM4-40GB", "A100-40GB"), ("NVIDIA A100-SXM4-80GB",
                                                                "A100-80GB"),
                      ("NVIDIA A10G", "A10G"), ("NVIDIA A10", "A10"), ("NVIDIA L40S", "L40S"),
                      ("NVIDIA L4", "L4"), ("Tesla T4", "T4"), ("NVIDIA H200", "H200"),
                      ("NVIDIA GeForce RTX 4090", "RTX4090")):
        assert gpus.spec_for_device(name).key == key, name
    assert gpus.spec_for_device("Some Future GPU") is None
    assert gpus.sustained_flops("Some Future GPU") == 5e13  # the estimator's old default
    # The rates the estimator had for these stay (40% of the data sheet's peak).
    for name, before in (("A100", 1.25e14), ("L4", 4.8e13), ("T4", 2.6e13), ("RTX 4090", 6.6e13)):
        assert gpus.sustained_flops(name) == pytest.approx(before, rel=0.01), name


def test_described_hardware_has_every_gpu_of_every_node():
    hw = gpus.described("h100:8", nodes=2)
    assert (len(hw.gpus), hw.nodes, hw.described) == (16, 2, True)
    assert hw.gpus[0].name == "H100-80GB" and hw.gpus[0].memory_gb == 80 and hw.gpus[0].bf16
    assert not gpus.described("T4").gpus[0].bf16 and len(gpus.described("L4").gpus) == 1
    for bad, says in (("X9000:8", "unknown GPU 'X9000'"), ("H100:0", "GPU:COUNT"),
                      ("H100:eight", "GPU:COUNT")):
        with pytest.raises(ValueError, match=says):
            gpus.described(bad)


def test_full_fine_tuning_of_8b_plans_on_two_nodes_with_their_cost_and_time():
    one = _plan(gpus.described("H100-80GB:8"), constraints=Constraints(method="full"))
    two = _plan(gpus.described("H100-80GB:8", nodes=2), constraints=Constraints(method="full"))
    for p in (one, two):
        assert p.method == "full" and p.fits and p.strategy == "fsdp"
    assert (one.n_devices, two.n_devices) == (8, 16)
    assert "16x H100-80GB (80 GB, 2 nodes of 8)" in two.hardware_summary
    e1, e2 = one.estimates, two.estimates
    assert e1.tokens == e2.tokens
    # Same work; 16 GPUs at 80% (across the network) against 8 at 90% (NVLink).
    assert e1.train_hours / e2.train_hours == pytest.approx(16 * 0.8 / (8 * 0.9), rel=0.02)
    assert e2.cost_usd == pytest.approx(e2.gpu_hours * 2.5, rel=0.01)
    assert e2.gpu_hours == pytest.approx(e2.train_hours * 16, rel=0.01)


def test_plan_cli_plans_for_described_hardware(tmp_path):
    from conftest import DEMO_DATA
    from ftagent.agent.cli.main import app
    from typer.testing import CliRunner

    runner = CliRunner()
    args = ["plan", "--goal", GOAL, "--data", str(DEMO_DATA)]
    listed = runner.invoke(app, [*args, "--hardware", "list"])
    assert listed.exit_code == 0 and "H100-80GB" in listed.output and "$2.5/GPU-hour" in \
        listed.output
    bad = runner.invoke(app, [*args, "--hardware", "X9000:8"])
    assert bad.exit_code == 2 and "unknown GPU 'X9000'" in bad.output
    assert runner.invoke(app, [*args, "--nodes", "2"]).exit_code == 2
    result = runner.invoke(app, [*args, "--hardware", "A100-80GB:8", "--nodes", "2",
                                 "--json"])
    assert result.exit_code == 0, result.output
    planned = json.loads(result.output[result.output.index("{"):])
    assert planned["n_devices"] == 16 and "2 nodes of 8" in planned["hardware_summary"]
    assert planned["estimates"]["rate_usd_per_hour"] == 1.5


# ---- work too big for this machine ---------------------------------------------------

CPU = Hardware(cpu_cores=2, ram_gb=24, ram_available_gb=20, disk_free_gb=50, cpu_bf16=True)


def _too_big(hw=CPU, data=KNOWLEDGE, **constraints):
    from ftagent.tools.plan.scale_out import recommend

    inputs = PlanInputs(goal=GOAL, data=data, hardware=hw,
                        constraints=Constraints(method="full", **constraints),
                        model=lookup("meta-llama/Llama-3.1-8B-Instruct"))
    plan = make_plan(inputs)
    return plan, recommend(inputs, plan, config="my.yaml")


def test_full_fine_tuning_of_8b_on_a_cpu_recommends_the_cheapest_cluster_that_fits():
    plan, s = _too_big()
    assert not plan.fits and "more than the" in s.why
    # One H100 cannot hold 8B with full fine-tuning's 16 bytes a parameter; eight, sharded,
    # can, and cost less than eight A100s for the same work.
    assert (s.gpu, s.gpus_per_node, s.nodes) == ("H100-80GB", 8, 1)
    assert (s.model, s.method, s.strategy) == ("meta-llama/Llama-3.1-8B-Instruct", "full",
                                                "fsdp")
    on_it = _plan(gpus.described("H100-80GB:8"), constraints=Constraints(method="full"))
    assert s.cost_usd == on_it.estimates.cost_usd and s.train_hours == on_it.estimates.train_hours
    assert s.launcher == "skypilot"
    assert s.commands == {"skypilot": "ftagent launch skypilot my.yaml --gpus H100:8",
                          "slurm": "ftagent launch slurm my.yaml --nodes 1 --gpus-per-node 8"}
    _, none = _too_big(budget_usd=s.cost_usd / 2)  # no shape within the budget
    assert none is None


def test_a_tight_deadline_asks_for_several_nodes():
    from ftagent.tools.plan.decide import deadline_h

    lots = KNOWLEDGE.model_copy(update={"n_examples": 2_000_000})
    _, s = _too_big(data=lots, deadline_hours=2)
    assert s.gpu == "H100-80GB" and s.nodes > 1 and s.train_hours <= 2
    fewer = _plan(gpus.described("H100-80GB:8", nodes=s.nodes // 2), data=lots,
                  constraints=Constraints(method="full", deadline_hours=2))
    assert fewer.estimates.train_hours > deadline_h(Constraints(deadline_hours=2), CPU)
    assert f"--nodes {s.nodes}" in s.commands["skypilot"]


def test_work_this_machine_does_gets_no_cluster():
    from ftagent.tools.plan.scale_out import recommend

    small = DataFacts(n_examples=300, tokens_p50=200, tokens_p99=500, tokens_max=600,
                      prompt_tokens_p50=150, answer_tokens_p50=50)
    inputs = PlanInputs(goal=GOAL, data=small, hardware=CPU)
    plan = make_plan(inputs)
    assert plan.fits and recommend(inputs, plan) is None
    described = PlanInputs(goal=GOAL, data=KNOWLEDGE, hardware=gpus.described("L4"))
    assert recommend(described, make_plan(described)) is None  # planned for it on purpose


def test_the_strategy_gate_shows_the_cluster_job(tmp_path):
    import yaml
    from ftagent.agent.graph.nodes.planner import scale_out_job, strategy_request
    from ftagent.tools.plan.planner import with_scale_out
    from ftagent.tools.plan.report import plan_markdown

    inputs = PlanInputs(goal=GOAL, data=KNOWLEDGE, hardware=CPU,
                        constraints=Constraints(method="full"),
                        model=lookup("meta-llama/Llama-3.1-8B-Instruct"))
    plan = with_scale_out(make_plan(inputs), inputs, "my.yaml")
    text = plan_markdown(plan)
    assert "Too big for this machine" in text and "ftagent launch skypilot my.yaml" in text
    job = scale_out_job(tmp_path, plan.scale_out, plan.model)  # not here: nodes download it
    task = yaml.safe_load(job["text"])
    assert (task["num_nodes"], task["resources"]["accelerators"]) == (1, "H100:8")
    assert 'hf" download meta-llama/Llama-3.1-8B-Instruct' in task["setup"]
    assert "-c constraints.txt . torch==" in task["setup"]
    config = tmp_path / "train" / "attempt-1" / "config.yaml"
    assert job["command"] == f"ftagent launch skypilot {config} --gpus H100:8"
    assert (tmp_path / "launch" / "skypilot.yaml").read_text() == job["text"]
    state = {"run_dir": str(tmp_path), "plan": plan.model_dump() | {
        "model_path": None, "scale_out_job": job}}
    request = strategy_request(state)
    assert not request.passed and request.evidence["scale_out_job"]["text"] == job["text"]
    assert f"The skypilot job is in {job['path']}" in request.summary
    # On a Slurm cluster's login node the job is an sbatch script for the same shape.
    slurm = scale_out_job(tmp_path, plan.scale_out.model_copy(update={"launcher": "slurm"}),
                          plan.model)
    assert "#SBATCH --nodes=1" in slurm["text"] and "#SBATCH --gpus-per-node=8" in slurm["text"]
    assert slurm["command"] == f"ftagent launch slurm {config} --nodes 1 --gpus-per-node 8"
    subprocess.run(["bash", "-n", slurm["path"]], check=True)
