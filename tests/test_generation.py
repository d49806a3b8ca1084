"""Batched greedy generation must give the one-by-one answers, in input order, every time.

Runs on the 2-layer random Llama (SmolLM2 tokenizer and chat template), its weights redrawn
with a larger std: at the default init it answers every prompt with the same (empty) text,
which could not catch a permutation or a padding leak.
"""

from __future__ import annotations

import pytest
from ftagent.tools.evaluate.generation import eos_ids, generate, generate_one_by_one, left_pad

QUESTIONS = [
    "Hi",
    "How do I reset my PIN after three wrong attempts at the cash machine?",
    "Exchange rate?",
    "My card has not arrived yet, it has been two weeks since I ordered it, what can I do?",
    "Refund please",
]


@pytest.fixture(scope="module")
def tiny(tiny_model):
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.manual_seed(0)
    tok = AutoTokenizer.from_pretrained(tiny_model)
    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32).eval()
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" not in name:
                param.normal_(0.0, 0.3)
    return model, tok


def convs(questions=QUESTIONS):
    return [[{"role": "user", "content": q}] for q in questions]


def test_batched_equals_one_by_one_in_input_order(tiny):
    model, tok = tiny
    ref = generate_one_by_one(model, tok, convs(), max_new_tokens=8)
    # batch_size=2: sorting by length regroups prompts across batches, so order must be restored
    assert generate(model, tok, convs(), max_new_tokens=8, batch_size=2) == ref
    assert generate(model, tok, convs(), max_new_tokens=8, batch_size=16) == ref
    assert len(set(ref)) > 1  # distinct answers, so a permutation would be caught


def test_deterministic_across_calls(tiny):
    model, tok = tiny
    a = generate(model, tok, convs(), max_new_tokens=4, batch_size=3)
    b = generate(model, tok, convs(), max_new_tokens=4, batch_size=3)
    assert a == b


def test_left_padding_sorted_batches_and_stop_ids(tiny, monkeypatch):
    model, tok = tiny
    calls = []
    real = model.generate

    def spy(**kw):
        calls.append(kw)
        return real(**kw)

    monkeypatch.setattr(model, "generate", spy)
    padding_side = tok.padding_side
    stats: dict = {}
    generate(model, tok, convs(), max_new_tokens=2, batch_size=2, stats=stats)
    assert tok.padding_side == padding_side  # the shared tokenizer is not mutated
    assert [len(c["input_ids"]) for c in calls] == [2, 2, 1]
    widths = []
    for c in calls:
        mask = c["attention_mask"]
        assert bool(mask[:, -1].all())  # every prompt ends where generation starts
        assert (mask.cummax(dim=1).values == mask).all()  # zeros only on the left
        assert c["do_sample"] is False
        assert tok.eos_token_id in c["eos_token_id"]
        widths.append(mask.shape[1])
    assert widths == sorted(widths)  # batches built from length-sorted prompts
    assert stats["padding"] > 0


def test_left_pad_and_eos_ids(tiny):
    model, tok = tiny
    ids, mask = left_pad([[5, 6, 7], [8]], pad=0)
    assert ids.tolist() == [[5, 6, 7], [0, 0, 8]]
    assert mask.tolist() == [[1, 1, 1], [0, 0, 1]]
    model.generation_config.eos_token_id = [tok.eos_token_id, 7]
    try:
        assert eos_ids(model, tok) == [tok.eos_token_id, 7]
    finally:
        model.generation_config.eos_token_id = tok.eos_token_id


def test_empty_input(tiny):
    model, tok = tiny
    assert generate(model, tok, []) == []
    assert generate_one_by_one(model, tok, []) == []
