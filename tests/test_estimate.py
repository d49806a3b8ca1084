"""The memory/time estimator: exact parameter arithmetic, sane scaling. Its error against
real runs is measured by evals/bench/estimator.py, not asserted here."""

import json

import pytest
from ftagent.tools.plan.estimate import embedding_params, estimate, lora_params, shape_from_config

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@pytest.mark.parametrize("targets", [("q_proj", "k_proj", "v_proj", "o_proj"), ALL_LINEAR])
def test_lora_parameter_count_matches_peft(tiny_model, targets):
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    shape = shape_from_config(json.loads((tiny_model / "config.json").read_text()))
    model = get_peft_model(
        AutoModelForCausalLM.from_pretrained(tiny_model),
        LoraConfig(r=8, target_modules=list(targets), task_type="CAUSAL_LM"),
    )
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert lora_params(shape, 8, list(targets)) == trainable


def test_estimates_scale_the_right_way(bundled_model):
    shape = shape_from_config(json.loads((bundled_model.path / "config.json").read_text()))
    base = estimate(shape, "lora", "fp32", batch=8, seq=256)
    assert estimate(shape, "lora", "fp32", batch=16, seq=256).total_gb > base.total_gb
    assert estimate(shape, "lora", "bf16", batch=8, seq=256).total_gb < base.total_gb
    gc = estimate(shape, "lora", "fp32", batch=8, seq=256, gradient_checkpointing=True)
    assert gc.parts_gb["activations"] < base.parts_gb["activations"] / 5
    # 4-bit blocks, but embeddings stay fp32 (prepare_model_for_kbit_training upcasts them)
    emb = embedding_params(shape)
    assert emb == shape.vocab_size * shape.hidden_size  # SmolLM2 ties its output head
    q = estimate(shape, "qlora", "bf16").parts_gb["weights"]
    assert q == round(((shape.params - emb) * 0.5625 + emb * 4) / 2**30, 3)
    full = estimate(shape, "full", "fp32", batch=8, seq=256)
    assert (
        full.trainable_params == shape.params and full.flops_per_step == 1.5 * base.flops_per_step
    )
    assert base.seconds_per_step and base.seconds_per_step > 0


def test_big_model_numbers_are_plausible():
    llama8b = {
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "vocab_size": 128256,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
    }
    shape = shape_from_config(llama8b)
    assert 7.9e9 < shape.params < 8.1e9  # Llama-3.1-8B has 8.03B parameters
    qlora = estimate(
        shape, "qlora", "bf16", batch=1, seq=1024, gradient_checkpointing=True, device="cuda"
    )
    lora = estimate(
        shape, "lora", "bf16", batch=1, seq=1024, gradient_checkpointing=True, device="cuda"
    )
    assert 5 < qlora.total_gb < 14 < 16 < lora.total_gb < 24  # QLoRA fits 16 GB, LoRA not
