"""The memory/time estimator: exact parameter arithmetic, what a micro-batch computes as the
trainer runs it (padding-free rows, the selective loss, shared prefixes), sane scaling. Its
error against real runs is measured by evals/bench/estimator.py, not asserted here."""

import json

import pytest
from ftagent.tools.config.train_config import TrainConfig
from ftagent.tools.data.facts import TokenFacts
from ftagent.tools.plan.estimate import (
    SELECTIVE_LOGIT_COPIES,
    TRL_LOGIT_COPIES,
    RunSettings,
    embedding_params,
    estimate,
    estimate_for,
    lora_params,
    micro_batches,
    settings_of,
    shape_from_config,
)

ALL_LINEAR = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")
SMOLLM = {"hidden_size": 576, "intermediate_size": 1536, "num_hidden_layers": 30,
          "num_attention_heads": 9, "num_key_value_heads": 3, "vocab_size": 49152,
          "tie_word_embeddings": True}
# The prepared self_instruct rows with SmolLM2's template (measured by token_facts).
SELF_INSTRUCT = TokenFacts(rows=175, mean=148.4, longest=1412, loss_mean=63.8,
                           loss_longest=62, shared_prefix=24)
# BANKING77: the 77-label system prompt shared by every row, a label as the answer.
BANKING = TokenFacts(rows=1540, mean=593.5, longest=660, loss_mean=8.2, loss_longest=10,
                     shared_prefix=566)


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
    assert gc.parts_gb["activations"] < base.parts_gb["activations"] / 3
    # 4-bit blocks, but embeddings stay fp32 (prepare_model_for_kbit_training upcasts them)
    emb = embedding_params(shape)
    assert emb == shape.vocab_size * shape.hidden_size  # SmolLM2 ties its output head
    q = estimate(shape, "qlora", "bf16").parts_gb["weights"]
    assert q == round(((shape.params - emb) * 0.5625 + emb * 4) / 2**30, 3)
    full = estimate(shape, "full", "fp32", batch=8, seq=256)
    assert full.trainable_params == shape.params
    # 6 FLOPs per parameter and token against 4; attention costs the same in both
    assert 1.4 < full.flops_per_step / base.flops_per_step <= 1.5
    assert base.seconds_per_step and base.seconds_per_step > 0


def test_padding_free_rows_cost_their_length_not_max_length():
    facts = TokenFacts(mean=100, longest=300, loss_mean=10, loss_longest=20)
    run = RunSettings(batch=8, max_length=2048, shared_prefix=False)
    peak, typical = micro_batches(run, facts)
    assert peak.tokens == 300 + 7 * 100 and typical.tokens == 800
    # the selective loss projects the loss positions only
    assert peak.logits == 20 + 7 * 10 and typical.logits == 80
    shape = shape_from_config(SMOLLM)
    long_cap = estimate_for(shape, run, facts)
    assert estimate_for(shape, run.model_copy(update={"max_length": 4096}), facts) == long_cap
    # a shorter max_length cuts the longest row's end (its answer)
    cut, _ = micro_batches(run.model_copy(update={"max_length": 200}), facts)
    assert cut.tokens == 200 + 7 * 100 and cut.logits == 1 + 7 * 10


def test_logits_follow_loss_tokens_with_the_selective_loss():
    shape = shape_from_config(SMOLLM)
    run = RunSettings(batch=4, shared_prefix=False)
    few = estimate_for(shape, run, TokenFacts(mean=500, longest=500, loss_mean=5,
                                              loss_longest=5))
    many = estimate_for(shape, run, TokenFacts(mean=500, longest=500, loss_mean=50,
                                               loss_longest=50))
    assert few.parts_gb["activations"] == many.parts_gb["activations"]
    assert many.peak_logits == 10 * few.peak_logits == 200
    assert many.parts_gb["logits"] == pytest.approx(10 * few.parts_gb["logits"], rel=0.05)
    assert few.parts_gb["logits"] == pytest.approx(
        20 * shape.vocab_size * 4 * SELECTIVE_LOGIT_COPIES / 2**30, abs=0.001)
    # without completion_only_loss every token carries loss
    whole = micro_batches(run.model_copy(update={"completion_only_loss": False}),
                          TokenFacts(mean=500, longest=500, loss_mean=5, loss_longest=5))[0]
    assert whole.logits == 4 * 499


def test_shared_prefix_is_computed_once_per_micro_batch():
    run = RunSettings(batch=8, max_length=1024)
    peak, typical = micro_batches(run, BANKING)
    assert peak.tokens == round(660 + 7 * 593.5 - 7 * 566)
    assert typical.tokens == round(566 + 8 * (593.5 - 566))
    off = micro_batches(run.model_copy(update={"shared_prefix": False}), BANKING)[0]
    assert off.tokens == round(660 + 7 * 593.5)
    # fewer than 16 shared tokens, a batch of one, or padded rows: nothing is shared
    short = BANKING.model_copy(update={"shared_prefix": 15})
    assert micro_batches(run, short)[0].tokens == off.tokens
    one = micro_batches(run.model_copy(update={"batch": 1}), BANKING)[0]
    assert one.tokens == 660
    padded = micro_batches(run.model_copy(update={"padding_free": False}), BANKING)[0]
    assert padded.tokens == 8 * 660
    shape = shape_from_config(SMOLLM)
    shared, unshared = (estimate_for(shape, r, BANKING)
                        for r in (run, run.model_copy(update={"shared_prefix": False})))
    assert shared.total_gb < unshared.total_gb / 2
    assert shared.seconds_per_step < unshared.seconds_per_step / 3


def test_dpo_and_prompt_tuning_keep_padded_rows_and_trl_logits():
    facts = TokenFacts(mean=100, longest=300, loss_mean=10, loss_longest=20)
    dpo = micro_batches(RunSettings(objective="dpo", batch=4, shared_prefix=False), facts)[0]
    assert dpo.tokens == 2 * 4 * 300 and dpo.logits == dpo.tokens  # chosen and rejected
    prompt = micro_batches(RunSettings(method="prompt_tuning", batch=4, virtual_tokens=20),
                           facts)[0]
    assert prompt.tokens == 4 * 320 and prompt.logits == prompt.tokens
    shape = shape_from_config(SMOLLM)
    e = estimate_for(shape, RunSettings(method="prefix_tuning", batch=4), facts)
    assert e.parts_gb["logits"] == pytest.approx(
        4 * 300 * shape.vocab_size * 4 * TRL_LOGIT_COPIES / 2**30, abs=0.001)


def test_settings_of_a_config():
    cfg = TrainConfig(model="m", train_file="t", output_dir="o", batch_size=4, max_length=900,
                      lora={"r": 64, "alpha": 128, "target_modules": "all-linear"},
                      gradient_checkpointing=True, shared_prefix=False)
    s = settings_of(cfg, "bf16")
    assert (s.batch, s.max_length, s.lora_r, s.lora_targets, s.gradient_checkpointing,
            s.shared_prefix, s.precision) == (4, 900, 64, ALL_LINEAR, True, False, "bf16")
    assert settings_of(cfg, "bf16", batch=2).batch == 2


def test_the_self_instruct_run_the_pre_flight_stopped_now_fits():
    """A default run on self_instruct (batch 8, max_length 1472, bf16 LoRA r 8) was
    estimated at 29.42 GB from batch x max_length and full logits, against a 17.76 GB
    budget; it peaks at a few GB."""
    shape = shape_from_config(SMOLLM)
    run = RunSettings(precision="bf16", batch=8, max_length=1472, lora_r=8)
    e = estimate_for(shape, run, SELF_INSTRUCT)
    assert 2.0 < e.total_gb < 8.0
    # The 24 shared tokens (SmolLM2's default system prompt) would save 7 x 24 of ~1,190
    # tokens a micro-batch, under MIN_SAVED_SHARE: the trainer does not share them.
    assert e.peak_tokens == round(1412 + 7 * 148.4)
    assert e.parts_gb["logits"] < 1.0


def test_sharing_is_estimated_only_where_the_trainer_shares():
    from ftagent.tools.data.facts import worth_sharing

    shape = shape_from_config(SMOLLM)
    run = RunSettings(precision="bf16", batch=8, max_length=1472, lora_r=8)
    long_prefix = SELF_INSTRUCT.model_copy(update={"shared_prefix": 100})
    assert worth_sharing(7 * 100, 8 * 148.4)
    assert estimate_for(shape, run, long_prefix).peak_tokens == round(1412 + 7 * 148.4 - 700)
    assert not worth_sharing(7 * 24, 8 * 148.4) and not worth_sharing(0, 0)


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


def test_token_facts_of_chat_rows(bundled_model):
    """Lengths with the chat template, loss tokens = the answer, and the shared prefix:
    the common system prompt, stopping before the token that predicts the first answer
    token; rows with different system prompts share too little to count."""
    from ftagent.tools.data.tokens import token_facts
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(bundled_model.path)

    def n(messages, **kw) -> int:
        return len(tok.apply_chat_template(messages, return_dict=False, **kw))

    system = "Classify the message. Labels: " + ", ".join(f"label_{i}" for i in range(40))
    rows = [{"messages": [{"role": "system", "content": system},
                          {"role": "user", "content": f"message number {i} " * (i + 1)},
                          {"role": "assistant", "content": f"label_{i}"}]} for i in range(6)]
    facts = token_facts(tok, rows)
    lengths = [n(r["messages"]) for r in rows]
    prompt0 = n(rows[0]["messages"][:-1], add_generation_prompt=True)
    system_tokens = n(rows[0]["messages"][:1])
    assert facts.rows == 6 and facts.longest == max(lengths)
    assert facts.mean == pytest.approx(sum(lengths) / 6, abs=0.1)
    assert 1 <= facts.loss_mean < 10
    assert system_tokens - 2 <= facts.shared_prefix < prompt0 - 1
    differ = [{"messages": [{"role": "system", "content": f"Prompt {i}: " + system[i:]},
                            *r["messages"][1:]]} for i, r in enumerate(rows)]
    assert token_facts(tok, differ).shared_prefix == 0


def test_dpo_pairs_compute_their_prompt_once():
    """Shared DPO micro-batches: each pair's prompt once (its last token in each answer's
    segment); a system prompt all rows share once when the grouping prefers it; padded rows
    where sharing saves too little, or without an adapter (full: a separate reference)."""
    facts = TokenFacts(mean=100, longest=300, loss_mean=10, loss_longest=20)
    run = RunSettings(objective="dpo", batch=4)
    peak, typical = micro_batches(run, facts)
    assert peak.tokens == (279 + 2 * 21) + 3 * (89 + 2 * 11)
    assert typical.tokens == 4 * (89 + 2 * 11) and peak.logits == peak.tokens
    padded = micro_batches(run.model_copy(update={"shared_prefix": False}), facts)[0]
    assert padded.tokens == 2 * 4 * 300 and peak.pairs < padded.pairs
    system = facts.model_copy(update={"shared_prefix": 60})
    assert micro_batches(run, system)[1].tokens == 60 + 4 * 2 * 40
    long_answers = TokenFacts(mean=100, longest=100, loss_mean=80, loss_longest=80)
    assert micro_batches(run, long_answers)[0].tokens == 2 * 4 * 100
    full = micro_batches(run.model_copy(update={"method": "full"}), facts)[0]
    assert full.tokens == padded.tokens
    shape = shape_from_config(SMOLLM)
    shared, unshared = (estimate_for(shape, r, facts) for r in
                        (run, run.model_copy(update={"shared_prefix": False})))
    assert shared.total_gb < unshared.total_gb
    assert shared.seconds_per_step < unshared.seconds_per_step
