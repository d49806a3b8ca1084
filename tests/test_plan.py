from tools.hardware import GPU, Hardware, probe
from tools.plan import make_plan, model_facts, plan_markdown


def test_param_count_from_config_matches_the_model(tiny_model):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(tiny_model)
    assert model_facts(tiny_model).params == sum(p.numel() for p in model.parameters())


def test_bundled_model_facts(bundled_model):
    facts = model_facts(bundled_model.path)
    assert 130e6 < facts.params < 140e6 and facts.architecture == "LlamaForCausalLM"


def test_lora_by_default_qlora_when_memory_is_short(bundled_model):
    facts = model_facts(bundled_model.path)
    roomy = Hardware(cpu_cores=2, ram_gb=24, ram_available_gb=20, disk_free_gb=50)
    tight = Hardware(cpu_cores=2, ram_gb=1, ram_available_gb=1, disk_free_gb=50)
    assert make_plan("g", "classification", 250, "m", facts, roomy).method == "lora"
    plan = make_plan("g", "classification", 250, "m", facts, tight)
    assert plan.method == "qlora"
    assert any("QLoRA" in r for r in plan.reasons)
    assert "# Fine-tuning plan: g" in plan_markdown(plan)


def test_gpu_budget_and_precision(bundled_model):
    facts = model_facts(bundled_model.path)
    hw = Hardware(
        cpu_cores=16,
        ram_gb=128,
        ram_available_gb=100,
        disk_free_gb=50,
        gpus=[GPU(name="H100", memory_gb=80, compute_capability="9.0", bf16=True)],
    )
    plan = make_plan("g", "generation", 1000, "m", facts, hw)
    assert plan.precision == "bf16" and plan.memory_budget_gb == 80
    assert plan.targets.primary_metric == "exact_match"


def test_probe_reports_this_machine(tmp_path):
    hw = probe(tmp_path)
    assert hw.cpu_cores >= 1 and hw.ram_gb > 0 and hw.disk_free_gb > 0
