"""The tester's shared prefix (a long system prompt run once per model) changes no number:
answer log-likelihoods and greedy answers equal those computed row by row."""

from __future__ import annotations

import pytest
from ftagent.tools.evaluate.generation import generate, generate_one_by_one
from ftagent.tools.evaluate.likelihood import answer_nll
from ftagent.tools.evaluate.prefix_cache import common_length, find_shared_prefix

LABELS = " ".join(f"intent_{i}_{w}" for i, w in enumerate(
    "card arrival delivery exchange rate refund pin blocked transfer fee cash top up "
    "virtual card lost stolen balance verify identity".split()))
SYSTEM = f"Classify the customer's message. Answer with one label from: {LABELS}."
QUESTIONS = ["Hi", "Where is my new card? I ordered it two weeks ago.", "Exchange rate?",
             "My PIN is blocked after three tries, what now?", "Refund please"]
ANSWERS = ["intent_0_card", "intent_1_arrival", "intent_4_rate", "intent_8_pin", "intent_6_refund"]


def convs(with_answers: bool):
    out = []
    for q, a in zip(QUESTIONS, ANSWERS, strict=True):
        c = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": q}]
        out.append(c + [{"role": "assistant", "content": a}] if with_answers else c)
    return out


@pytest.fixture(scope="module")
def tiny(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    with torch.no_grad():  # larger weights: distinct answers, so a leak would show
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.3)
    return model, tok


def row_by_row_nll(model, tok, conversation):
    """The plain computation: one unpadded forward, full logits."""
    import torch
    from ftagent.tools.data.tokens import split_prompt_answer

    prompt, full = split_prompt_answer(tok, conversation)
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([full])).logits[0].float()
    target = torch.tensor(full[len(prompt):])
    return float(torch.nn.functional.cross_entropy(logits[len(prompt) - 1 : -1], target,
                                                   reduction="sum")), len(target)


def test_answer_nll_shared_and_unshared_equal_row_by_row(tiny):
    model, tok = tiny
    ref = [row_by_row_nll(model, tok, c) for c in convs(True)]
    for share in (True, False):
        got = answer_nll(model, tok, convs(True), batch_size=2, share_prefix=share)
        assert [n for _, n in got] == [n for _, n in ref]
        for (a, _), (b, _) in zip(got, ref, strict=True):
            assert a == pytest.approx(b, rel=1e-4, abs=1e-4)


def test_the_prefix_is_found_and_run_once(tiny):
    model, tok = tiny
    from ftagent.tools.evaluate.generation import prompt_ids

    prompts = prompt_ids(tok, convs(False))
    shared = find_shared_prefix(model, prompts, min(map(len, prompts)) - 1, batch_size=2)
    assert shared is not None and len(shared) == common_length(prompts, 10**6)
    assert len(shared) > 60  # the label list, not just the chat header
    assert shared.cache.get_seq_length() == len(shared)
    copy = shared.for_batch(3)
    assert copy.layers[0].keys.shape[0] == 3 and shared.cache.layers[0].keys.shape[0] == 1


def test_generation_with_the_shared_prefix_equals_one_by_one(tiny):
    model, tok = tiny
    ref = generate_one_by_one(model, tok, convs(False), max_new_tokens=8)
    stats: dict = {}
    got = generate(model, tok, convs(False), max_new_tokens=8, batch_size=2, stats=stats)
    assert stats["shared_prefix"] > 60
    assert got == ref
    assert len(set(ref)) > 1


def test_no_sharing_when_rows_share_little_or_a_window_could_drop_the_prefix(tiny, tiny_model):
    import torch
    from ftagent.tools.evaluate.generation import prompt_ids
    from transformers import AutoConfig, AutoModelForCausalLM

    model, tok = tiny
    plain = prompt_ids(tok, [[{"role": "user", "content": q}] for q in QUESTIONS])
    assert find_shared_prefix(model, [[1, 2, 3] + p for p in plain[:1]], 2, 2) is None
    prompts = prompt_ids(tok, convs(False))
    cfg = AutoConfig.from_pretrained(tiny_model)
    cfg.sliding_window = 32
    windowed = AutoModelForCausalLM.from_config(cfg, dtype=torch.float32).eval()
    assert find_shared_prefix(windowed, prompts, min(map(len, prompts)) - 1, 2) is None


def test_prefix_tuning_adapters_keep_their_own_cache(tiny):
    """Prefix tuning feeds its own past keys and values: no shared cache is built, and
    scoring still runs."""
    from peft import PrefixTuningConfig, get_peft_model

    model, tok = tiny
    peft = get_peft_model(model, PrefixTuningConfig(task_type="CAUSAL_LM",
                                                    num_virtual_tokens=4)).eval()
    from ftagent.tools.evaluate.generation import prompt_ids

    prompts = prompt_ids(tok, convs(False))
    assert find_shared_prefix(peft, prompts, min(map(len, prompts)) - 1, 2) is None
    got = answer_nll(peft, tok, convs(True), batch_size=2)
    assert len(got) == len(QUESTIONS) and all(n > 0 for _, n in got)
