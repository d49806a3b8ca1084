"""The planner's rules on plain values, its report, its feedback loop, and its edge on
real data (the scenario table in evals/planner scores the decisions in bulk)."""

import json

from ftagent.tools.data.facts import DataFacts
from ftagent.tools.hardware import GPU, Hardware, probe
from ftagent.tools.plan.estimate import shape_from_config
from ftagent.tools.plan.report import plan_markdown
from ftagent.tools.plan.rules import make_plan
from ftagent.tools.plan.types import Constraints, PlanInputs
from ftagent.tools.registry import card_from_folder, lookup

CPU = Hardware(cpu_cores=2, ram_gb=24, ram_available_gb=20, disk_free_gb=50, cpu_bf16=True)
RTX = Hardware(cpu_cores=16, ram_gb=64, ram_available_gb=60, disk_free_gb=500, gpus=[
    GPU(name="NVIDIA GeForce RTX 4090", memory_gb=24, compute_capability="8.9", bf16=True)])
CHAT = DataFacts(n_examples=1240, tokens_p50=300, tokens_p99=900, tokens_max=1000,
                 prompt_tokens_p50=200, answer_tokens_p50=100)
SECTIONS = ["## Approach", "## Dataset requirements", "## Hardware requirements",
            "## Training configuration", "## Evaluation plan", "## Cost estimate",
            "## Timeline", "## Risks and mitigations"]


def plan(goal="customer support model with company FAQ and tone", data=CHAT, hw=RTX, **kw):
    return make_plan(PlanInputs(goal=goal, data=data, hardware=hw, **kw))


def test_param_count_from_config_matches_the_model(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    cfg = json.loads((tiny_model / "config.json").read_text())
    assert shape_from_config(cfg).params == sum(p.numel() for p in model.parameters())


def test_bundled_model_card_comes_from_its_folder_and_the_registry(bundled_model):
    card = card_from_folder(bundled_model.path, bundled_model.name)
    assert card.id == "HuggingFaceTB/SmolLM2-135M-Instruct" and card.licence == "Apache-2.0"
    assert 130e6 < card.params < 140e6 and card.architecture == "LlamaForCausalLM"


def test_eight_b_on_24_gb_is_qlora_and_the_reason_cites_the_inputs():
    p = plan(model=lookup("meta-llama/Llama-3.1-8B-Instruct"))
    assert p.method == "qlora" and p.fits
    why = " ".join(p.reasons)
    assert "1,240 examples" in why and "24 GB" in why and "8.0B" in why
    assert lookup("meta-llama/Llama-3.1-8B-Instruct").id in p.model
    big = RTX.model_copy(update={"gpus": [RTX.gpus[0].model_copy(update={"memory_gb": 80})]})
    assert plan(hw=big, model=lookup("meta-llama/Llama-3.1-8B-Instruct")).method == "lora"


def test_plan_markdown_has_every_section_and_a_cost():
    p = plan()
    text = plan_markdown(p)
    for section in SECTIONS:
        assert section in text, section
    assert "GPU-hours" in text and "$" in text
    assert p.estimates.gpu_hours > 0 and p.estimates.cost_usd >= 0


def test_small_narrow_task_gets_prompting_first_with_a_prompt_from_the_data():
    ex = [{"messages": [{"role": "system", "content": "Reply with the intent."},
                        {"role": "user", "content": f"message {i}"},
                        {"role": "assistant", "content": f"label_{i % 3}"}]} for i in range(4)]
    data = DataFacts(n_examples=60, kind="classification", n_labels=3, tokens_p50=40,
                     tokens_p99=60, tokens_max=70, examples=ex)
    p = plan(goal="route tickets", data=data, hw=CPU)
    assert p.prompting_first and p.task_type == "classification"
    assert "Reply with the intent." in p.few_shot_prompt and "label_1" in p.few_shot_prompt
    assert "{input}" in p.few_shot_prompt
    off = plan(goal="route tickets", data=data, hw=CPU,
               constraints=Constraints(prompting_first=False))
    assert not off.prompting_first and off.few_shot_prompt is None


def test_preference_pairs_plan_dpo():
    data = DataFacts(n_examples=1500, kind="preference", tokens_p50=200, tokens_p99=700,
                     tokens_max=1000)
    p = plan(goal="make the assistant more harmless", data=data)
    assert p.method == "dpo" and p.objective == "dpo" and p.training.dpo_beta == 0.1
    assert any("1,500 chosen/rejected pairs" in r for r in p.reasons)


def test_rejected_plan_reasons_change_the_next_plan():
    first = plan()
    smaller = plan(feedback=["too slow and too expensive"], previous_model=first.model)
    assert smaller.model_card.params < first.model_card.params * 0.6
    assert smaller.feedback_applied
    assert plan(feedback=["use QLoRA please"]).adapter == "qlora"
    assert plan(feedback=["permissive licence only"]).model_card.licence_kind == "permissive"


def test_nothing_fits_is_a_warning_not_a_crash():
    tiny = Hardware(cpu_cores=2, ram_gb=2, ram_available_gb=0.5, disk_free_gb=5)
    p = plan(hw=tiny, model=lookup("meta-llama/Llama-3.1-70B-Instruct"))
    assert not p.fits and p.warnings
    assert "Does not fit" in plan_markdown(p)


def test_data_facts_of_the_demo_data(bundled_model):
    from ftagent.tools.plan.planner import data_facts
    from transformers import AutoTokenizer

    from tests.conftest import DEMO_DATA

    facts = data_facts(DEMO_DATA, AutoTokenizer.from_pretrained(bundled_model.path))
    assert facts.n_examples == 250 and facts.kind == "classification" and facts.n_labels == 10
    assert facts.tokens_measured and 0 < facts.tokens_p50 <= facts.tokens_p99 <= facts.tokens_max
    assert facts.examples and facts.examples[0]["messages"][-1]["role"] == "assistant"


def test_probe_reports_this_machine(tmp_path):
    hw = probe(tmp_path)
    assert hw.cpu_cores >= 1 and hw.ram_gb > 0 and hw.disk_free_gb > 0
