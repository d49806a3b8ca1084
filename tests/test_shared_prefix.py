"""Shared-prefix batches are exact: loss and gradients equal the unshared padding-free
computation, on tiny random models (Llama with LoRA on attention and MLP; Gemma 2 with a
sliding window and soft-capped attention logits)."""

from __future__ import annotations

import pytest
import torch
from ftagent.tools.train.shared_prefix import (
    MIN_SHARED,
    ROW_TOKENS_KEY,
    SEGMENTS_KEY,
    SharedPrefixCollator,
    Unit,
    group_units,
    layout,
)


def rows_with_prefix(prefix: list[int], *shapes: tuple[int, int], seed: int = 1) -> list[dict]:
    """Rows = prefix + random tokens of (length, prompt length after the prefix); the
    prompt part carries no loss."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n, p in shapes:
        tail = torch.randint(10, 2000, (n,), generator=g).tolist()
        ids = prefix + tail
        out.append({"input_ids": ids, "labels": [-100] * (len(prefix) + p) + tail[p:]})
    return out


def trl_collator():
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=0, padding_free=True)


def lora_model(path, seed: int = 0):
    """The tiny model with non-zero LoRA on every linear layer, so the adapter changes
    the prefix's keys and values (and gradients must flow through them)."""
    from ftagent.tools.train.attention import register
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    base = AutoModelForCausalLM.from_pretrained(path, attn_implementation=register(),
                                                dtype=torch.float32)
    cfg = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False,
                     task_type="CAUSAL_LM")
    return get_peft_model(base, cfg)


def loss_and_grads(model, batch: dict):
    from ftagent.tools.train.loss import selective_loss

    model.zero_grad()
    inputs = {k: v for k, v in batch.items() if k != ROW_TOKENS_KEY}
    loss, n_tokens, _ = selective_loss(model, inputs)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}
    return loss.item(), n_tokens, grads


def test_rows_sharing_a_system_prompt_form_one_group_that_stops_before_the_answer():
    prefix = list(range(100, 140))  # 40 shared tokens
    rows = rows_with_prefix(prefix, (6, 2), (9, 1), (5, 3))
    groups = group_units([Unit(r["input_ids"], r["labels"]) for r in rows])
    assert len(groups) == 1 and len(groups[0].units) == 3
    # Shared up to, not including, the token before the first answer token of the row
    # whose answer starts earliest (prompt tail of 1 token: index 40 precedes it).
    assert groups[0].prefix == 40 and groups[0].saved == 80
    first_loss = min(r["labels"].index(next(x for x in r["labels"] if x != -100))
                     for r in rows)
    assert groups[0].prefix <= first_loss - 1


def test_rows_with_different_or_short_prefixes_are_not_merged():
    a = rows_with_prefix(list(range(100, 140)), (6, 2), (7, 2), seed=1)
    b = rows_with_prefix(list(range(500, 540)), (6, 2), (8, 2), seed=2)
    short = rows_with_prefix(list(range(100, 100 + MIN_SHARED - 1)), (6, 2), seed=3)
    short[0]["input_ids"][MIN_SHARED - 1:] = [1999] * (len(short[0]["input_ids"]) - 15)
    groups = group_units([Unit(r["input_ids"], r["labels"]) for r in a + b + short])
    shared = sorted((len(g.units), g.prefix) for g in groups)
    assert shared == [(1, 0), (2, 40), (2, 40)]


def test_layout_positions_continue_after_the_prefix_and_no_label_crosses_a_boundary():
    rows = rows_with_prefix(list(range(100, 120)), (5, 1), (4, 1))
    units = [Unit(r["input_ids"], r["labels"]) for r in rows]
    out = layout(group_units(units))
    segs = out[SEGMENTS_KEY].tolist()
    assert [s[2] for s in segs] == [1, 2, 2]
    p = segs[0][1]
    assert out["input_ids"].shape[1] == p + sum(len(u.ids) - p for u in units)
    pos = out["position_ids"][0].tolist()
    for start, end, kind in segs:
        assert pos[start] == (0 if kind == 1 else p)
        assert pos[end - 1] == pos[start] + end - start - 1
        assert out["labels"][0, start] == -100
    loss_tokens = sum(sum(x != -100 for x in u.labels) for u in units)
    assert int((out["labels"] != -100).sum()) == loss_tokens


def test_collator_counts_row_tokens_and_leaves_unshared_batches_to_trl():
    collator = SharedPrefixCollator(trl_collator())
    plain = rows_with_prefix([], (12, 3), (9, 2))
    out = collator(plain)
    assert SEGMENTS_KEY not in out and "cu_seq_lens_q" in out
    assert int(out[ROW_TOKENS_KEY]) == 21
    shared = rows_with_prefix(list(range(100, 130)), (12, 3), (9, 2))
    out = collator(shared)
    assert SEGMENTS_KEY in out and "cu_seq_lens_q" not in out
    assert int(out[ROW_TOKENS_KEY]) == 81 and out["input_ids"].shape[1] == 51
    # A 20-token prefix in front of long rows saves under MIN_SAVED_SHARE: not shared.
    small = rows_with_prefix(list(range(100, 120)), (200, 3), (180, 2))
    out = collator(small)
    assert SEGMENTS_KEY not in out and int(out[ROW_TOKENS_KEY]) == 420


@pytest.mark.parametrize("packed", [False, True], ids=["rows", "packed"])
def test_shared_prefix_loss_and_gradients_equal_the_unshared_batch(tiny_model, packed):
    """LoRA on attention and MLP: a batch of rows sharing a 40-token system prompt plus
    one row with its own prompt, shared and unshared (TRL's padding-free collator): same
    loss-token count, same loss, same gradient for every adapter weight. Packed rows
    (several examples per dataset row, `seq_lengths`) split into their examples first."""
    model = lora_model(tiny_model)
    rows = rows_with_prefix(list(range(100, 140)), (7, 2), (11, 4), (6, 1), seed=3)
    rows += rows_with_prefix(list(range(700, 705)), (9, 2), seed=4)
    if packed:
        rows = [{"input_ids": rows[0]["input_ids"] + rows[1]["input_ids"],
                 "labels": rows[0]["labels"] + rows[1]["labels"],
                 "seq_lengths": [len(rows[0]["input_ids"]), len(rows[1]["input_ids"])]},
                *({**r, "seq_lengths": [len(r["input_ids"])]} for r in rows[2:])]
    shared = SharedPrefixCollator(trl_collator())(rows)
    plain = trl_collator()(rows)
    assert SEGMENTS_KEY in shared
    assert shared["input_ids"].shape[1] == plain["input_ids"].shape[1] - 80
    loss_s, n_s, grads_s = loss_and_grads(model, shared)
    loss_p, n_p, grads_p = loss_and_grads(model, plain)
    assert n_s == n_p > 0
    assert loss_s == pytest.approx(loss_p, rel=1e-5)
    assert grads_s.keys() == grads_p.keys() and any("lora_A" in k for k in grads_s)
    for k in grads_p:
        torch.testing.assert_close(grads_s[k], grads_p[k], atol=1e-6, rtol=1e-4, msg=k)


def test_sharing_would_show_if_suffixes_saw_each_other(tiny_model):
    """The checks here can fail: the same shared row with attention that lets the second
    suffix see the first (one causal block) changes its logits far beyond the tolerance."""
    model = lora_model(tiny_model).eval()
    rows = rows_with_prefix(list(range(100, 140)), (7, 2), (11, 4), seed=3)
    shared = SharedPrefixCollator(trl_collator())(rows)
    second = shared[SEGMENTS_KEY].tolist()[2]
    inputs = {k: v for k, v in shared.items() if k not in ("labels", ROW_TOKENS_KEY)}
    leaky = {k: v for k, v in inputs.items() if k != SEGMENTS_KEY}
    n = leaky["input_ids"].shape[1]
    leaky["cu_seq_lens_q"] = leaky["cu_seq_lens_k"] = torch.tensor([0, n], dtype=torch.int32)
    with torch.no_grad():
        right = model(**inputs).logits[0, second[0]:second[1]]
        wrong = model(**leaky).logits[0, second[0]:second[1]]
    assert (right - wrong).abs().max() > 1e-2


def test_shared_prefix_keeps_sliding_windows_and_softcaps(tiny_gemma2):
    """A random Gemma 2 (4-token sliding window on alternate layers, soft-capped attention
    logits): each suffix's logits equal its row run alone with eager attention, the
    reference implementation of both."""
    from ftagent.tools.train.attention import register
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    load = lambda attn: AutoModelForCausalLM.from_pretrained(  # noqa: E731
        tiny_gemma2, attn_implementation=attn, dtype=torch.float32).eval()
    shared_model, eager = load(register()), load("eager")
    rows = rows_with_prefix(list(range(100, 120)), (9, 2), (6, 1), seed=5)
    batch = SharedPrefixCollator(trl_collator())(rows)
    segs = batch[SEGMENTS_KEY].tolist()
    p = segs[0][1]
    with torch.no_grad():
        flat = shared_model(**{k: v for k, v in batch.items()
                               if k not in ("labels", ROW_TOKENS_KEY)}).logits[0]
        in_layout = sorted(rows, key=lambda r: r["input_ids"])  # groups sort their rows
        for r, (start, end, _) in zip(in_layout, segs[1:], strict=True):
            alone = eager(input_ids=torch.tensor([r["input_ids"]])).logits[0]
            torch.testing.assert_close(flat[start:end], alone[p:], atol=1e-5, rtol=0)
        torch.testing.assert_close(flat[:p], alone[:p], atol=1e-5, rtol=0)


def test_shared_prefix_gradients_with_a_sliding_window_stay_exact(tiny_gemma2):
    """Gemma 2's 4-token window over a 20-token prefix and suffixes of 9, 3 and 6 tokens
    (late suffix tokens see none of the prefix): loss and LoRA gradients equal the
    unshared batch's, and none is NaN."""
    from ftagent.tools.train.attention import register
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    base = AutoModelForCausalLM.from_pretrained(tiny_gemma2, attn_implementation=register(),
                                                dtype=torch.float32)
    model = get_peft_model(base, LoraConfig(r=4, lora_alpha=8, target_modules="all-linear",
                                            init_lora_weights=False, task_type="CAUSAL_LM"))
    rows = rows_with_prefix(list(range(100, 120)), (9, 2), (3, 1), (6, 1), seed=6)
    loss_s, n_s, grads_s = loss_and_grads(model, SharedPrefixCollator(trl_collator())(rows))
    loss_p, n_p, grads_p = loss_and_grads(model, trl_collator()(rows))
    assert n_s == n_p > 0 and loss_s == pytest.approx(loss_p, rel=1e-5)
    for k in grads_p:
        assert torch.isfinite(grads_s[k]).all(), k
        torch.testing.assert_close(grads_s[k], grads_p[k], atol=1e-6, rtol=1e-4, msg=k)
