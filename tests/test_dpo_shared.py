"""Shared-prefix DPO is exact: on a tiny random Llama with LoRA on attention and MLP, the
chosen and rejected log-probs (policy and reference), the loss, the metrics and the LoRA
gradients equal TRL's unshared padded computation; and a short real DPO run through
ftagent's recipe shares prompts and logs the same losses as with sharing off."""

from __future__ import annotations

import json
from contextlib import nullcontext

import pytest
import torch
from ftagent.tools.train.dpo_shared import LAYOUT_KEY, shared_dpo_trainer_class
from ftagent.tools.train.shared_prefix import PLAIN, SEGMENTS_KEY

SYSTEM = ("You sort customer messages for a bank. Answer with one label: card_arrival, "
          "card_linking, exchange_rate, cash_withdrawal, pending_transfer, top_up_failed, "
          "lost_or_stolen_card, refund_not_showing, wrong_amount_of_cash_received.")


def pair(question: str, chosen: str, rejected: str, system: str | None = SYSTEM) -> dict:
    prompt = ([{"role": "system", "content": system}] if system else []) + \
        [{"role": "user", "content": question}]
    return {"prompt": prompt, "chosen": [{"role": "assistant", "content": chosen}],
            "rejected": [{"role": "assistant", "content": rejected}]}


# Different prompt and completion lengths; the first three share the system prompt, the
# last has its own prompt.
PAIRS = [
    pair("My card has still not arrived after two weeks, where is it?", "card_arrival",
         "exchange_rate, or maybe a lost card"),
    pair("Why is the transfer I made yesterday still pending?",
         "pending_transfer because it waits for the bank", "top_up_failed"),
    pair("The ATM gave me 50 less than I asked for.", "wrong_amount_of_cash_received",
         "cash_withdrawal"),
    pair("How do I link the card I just got to the app, step by step please?",
         "card_linking", "lost_or_stolen_card", system="Be brief."),
]
# Short prompts (their own short system prompts: no template default) in front of long
# answers: not worth sharing, TRL's padded rows.
UNSHARED = [
    pair("Hi", "Hello! How can I help you with your account, your card or a transfer today? "
         "Tell me what happened and I will look into it.", "Hello.", system="Bank."),
    pair("Thanks", "You are welcome, is there anything else I can do for you today, such as "
         "a card, a transfer or a refund?", "Bye and have a good day, see you soon",
         system="Help."),
]


def dpo_trainer(model_dir, rows, tmp_path, shared: bool):
    """A DPO trainer on the tiny model: ftagent's shared-prefix one (per-example attention)
    or TRL's own (SDPA), with the same random non-zero LoRA on every linear layer (the
    policy differs from the reference, so the loss is not ln 2)."""
    from datasets import Dataset
    from ftagent.tools.train.attention import register
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig, DPOTrainer

    model = AutoModelForCausalLM.from_pretrained(
        model_dir, attn_implementation=register() if shared else "sdpa", dtype=torch.float32)
    args = DPOConfig(output_dir=str(tmp_path / ("shared" if shared else "plain")), beta=0.1,
                     per_device_train_batch_size=len(rows), report_to="none", use_cpu=True,
                     seed=0, max_length=512)
    lora = LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False,
                      task_type="CAUSAL_LM")
    cls = shared_dpo_trainer_class() if shared else DPOTrainer
    return cls(model=model, args=args, train_dataset=Dataset.from_list(rows),
               processing_class=AutoTokenizer.from_pretrained(model_dir), peft_config=lora)


def sequence_logps(trainer, batch: dict, reference: bool) -> torch.Tensor:
    """Each row's summed completion log-probs, as TRL's `_compute_loss` asks for them."""
    labels = batch["input_ids"].masked_fill(batch["completion_mask"] == 0, -100)
    inputs = {k: v for k, v in batch.items() if k != "completion_mask"}
    adapter = trainer.model.disable_adapter() if reference else nullcontext()
    with torch.no_grad(), adapter:
        out = trainer.model(**inputs, labels=labels, fused_lm_head=True, use_cache=False)
    return out.log_probs.sum(dim=1)


def loss_metrics_grads(trainer, batch: dict):
    trainer.model.train()
    trainer.model.zero_grad()
    trainer._metrics["train"].clear()
    loss = trainer.compute_loss(trainer.model, batch)
    loss.backward()
    grads = {k: p.grad.clone() for k, p in trainer.model.named_parameters()
             if p.grad is not None}
    metrics = {k: v[-1] for k, v in trainer._metrics["train"].items()}
    return loss.item(), metrics, grads


def compare(shared, plain, rows):
    """The shared trainer's batch of `rows` against TRL's: returns the shared batch and
    the largest absolute differences seen."""
    shared_batch, plain_batch = shared.data_collator(rows), plain.data_collator(rows)
    worst = {}
    for ref in (False, True):
        a, b = sequence_logps(shared, shared_batch, ref), sequence_logps(plain, plain_batch, ref)
        torch.testing.assert_close(a, b, atol=1e-4, rtol=1e-5)
        worst["ref_logps" if ref else "logps"] = (a - b).abs().max().item()
    loss_s, metrics_s, grads_s = loss_metrics_grads(shared, shared_batch)
    loss_p, metrics_p, grads_p = loss_metrics_grads(plain, plain_batch)
    assert loss_s == pytest.approx(loss_p, rel=1e-5, abs=1e-7)
    assert abs(loss_p - 0.6931) > 1e-3  # the policy is not the reference
    worst["loss"] = abs(loss_s - loss_p)
    for name in ("logps/chosen", "logps/rejected", "rewards/margins", "rewards/accuracies",
                 "entropy", "logits/chosen", "mean_token_accuracy", "num_tokens"):
        assert metrics_s[name] == pytest.approx(metrics_p[name], rel=1e-5, abs=1e-6), name
    assert grads_s.keys() == grads_p.keys()
    assert any("mlp" in k and "lora_A" in k for k in grads_s)
    assert any("self_attn" in k and "lora_B" in k for k in grads_s)
    for k in grads_p:
        torch.testing.assert_close(grads_s[k], grads_p[k], atol=1e-6, rtol=1e-4, msg=k)
    worst["grad"] = max((grads_s[k] - grads_p[k]).abs().max().item() for k in grads_p)
    return shared_batch, metrics_s, worst


def test_shared_prompts_give_trls_log_probs_loss_and_gradients(spiky_model, tmp_path):
    """Four pairs, three sharing a system prompt: one flattened row computes each prompt
    (and the system prompt across pairs) once; every number equals TRL's padded batch. A
    batch not worth sharing keeps TRL's padded rows, through the same attention. (The
    tiny model with large weights: its log-probs depend on the context, so a leak between
    chosen and rejected shows.)"""
    shared = dpo_trainer(spiky_model, PAIRS + UNSHARED, tmp_path, shared=True)
    plain = dpo_trainer(spiky_model, PAIRS + UNSHARED, tmp_path, shared=False)
    assert shared.shares_prefix, shared.not_shared_because
    rows = [shared.train_dataset[i] for i in range(len(PAIRS))]
    batch, metrics, worst = compare(shared, plain, rows)
    flat = batch[LAYOUT_KEY]["input_ids"].shape[1]
    real = int(batch["attention_mask"].sum())
    # Each pair's prompt at least once less, and the system prompt shared across pairs.
    prompts = sum(len(r["prompt_ids"]) - 1 for r in rows)
    assert real - flat > prompts
    assert metrics["tokens_saved_by_sharing"] == real - flat
    print(f"\nshared: {flat} of {real} tokens; max abs differences {worst}")
    # The checks can fail: the same row as one causal block (each answer sees the ones
    # before it) moves the log-probs far beyond the tolerance.
    leaky = {**batch, LAYOUT_KEY: {**batch[LAYOUT_KEY], SEGMENTS_KEY: torch.tensor(
        [[0, flat, PLAIN]], dtype=torch.int32)}}
    right, wrong = (sequence_logps(shared, b, False) for b in (batch, leaky))
    assert (right - wrong).abs().max() > 1e-2

    rows = [shared.train_dataset[i] for i in range(len(PAIRS), len(PAIRS) + len(UNSHARED))]
    batch, metrics, _ = compare(shared, plain, rows)
    assert LAYOUT_KEY not in batch and batch["input_ids"].shape[0] == 4
    assert metrics["tokens_saved_by_sharing"] == real - flat  # nothing added


def test_other_dpo_losses_keep_trls_path(tiny_model, tmp_path):
    """Configurations the shared layout does not cover run TRL's own path, unwrapped."""
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from trl import DPOConfig

    model = AutoModelForCausalLM.from_pretrained(tiny_model, dtype=torch.float32)
    args = DPOConfig(output_dir=str(tmp_path), loss_type=["ipo"], report_to="none",
                     use_cpu=True)
    trainer = shared_dpo_trainer_class()(
        model=model, args=args, train_dataset=Dataset.from_list(PAIRS),
        processing_class=AutoTokenizer.from_pretrained(tiny_model),
        peft_config=LoraConfig(r=4, target_modules="all-linear", task_type="CAUSAL_LM"))
    assert not trainer.shares_prefix and "sigmoid" in trainer.not_shared_because
    assert LAYOUT_KEY not in trainer.data_collator(
        [trainer.train_dataset[i] for i in range(3)])


def run_recipe(tiny_model, tmp_path, train_file, name: str, shared: bool):
    """ftagent's training recipe (`tools.train.recipe.train`, what `python -m
    ftagent.tools.train` runs), in this process to spare a second start-up."""
    from ftagent.tools.config.train_config import apply_overrides, default_config
    from ftagent.tools.train.recipe import train

    out = tmp_path / name
    cfg = default_config(str(tiny_model), "lora", str(train_file), None, str(out), 24,
                         1_000_000, False)
    cfg = apply_overrides(cfg, {"objective": "dpo", "max_steps": 3, "batch_size": 4,
                                "learning_rate": 5e-3, "warmup_ratio": 0.0, "max_length": 256,
                                "save_steps": 100, "shared_prefix": shared})
    result = train(cfg)
    assert result["effective"]["shared_prefix"] is shared
    return result, [json.loads(x) for x in (out / "metrics.jsonl").read_text().split("\n")
                    if x and "loss" in json.loads(x)]


def test_dpo_run_shares_prompts_and_logs_the_unshared_losses(tiny_model, tmp_path):
    """Three steps of real DPO through ftagent's recipe, sharing on and off: sharing saves
    tokens and every step's loss and reward margin are the same."""
    rows = [PAIRS[i % len(PAIRS)] for i in range(24)]
    train = tmp_path / "pairs.jsonl"
    train.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    on, logged_on = run_recipe(tiny_model, tmp_path, train, "on", True)
    off, logged_off = run_recipe(tiny_model, tmp_path, train, "off", False)
    assert on["effective"]["attention"] == "ftagent_varlen"
    assert on["tokens_saved_by_sharing"] > 0 and off["tokens_saved_by_sharing"] == 0
    assert on["tokens"] == off["tokens"]  # the rows' tokens, shared or not
    assert len(logged_on) == len(logged_off) == 3
    assert abs(logged_on[0]["loss"] - 0.6931) < 1e-3  # the adapter starts at zero
    # The policy moved away from the reference: the later steps compare something.
    assert min(abs(x["loss"] - 0.6931) for x in logged_off[1:]) > 1e-4
    for a, b in zip(logged_on, logged_off, strict=True):
        assert a["loss"] == pytest.approx(b["loss"], rel=1e-4, abs=1e-5), (a, b)
        assert a["rewards/margins"] == pytest.approx(b["rewards/margins"], rel=1e-3,
                                                     abs=1e-5), (a, b)
    losses = [(round(a["loss"], 6), round(b["loss"], 6))
              for a, b in zip(logged_on, logged_off, strict=True)]
    print(f"\nrun: {on['tokens_saved_by_sharing']} of {on['tokens']} tokens saved; losses "
          f"(shared, unshared) {losses}")


def test_rows_side_by_side_keep_windows_and_softcaps(tiny_gemma2):
    """The batches DPO leaves padded go through the same attention function: a random
    Gemma 2 (4-token sliding window on alternate layers, soft-capped attention logits) gives
    eager attention's logits on its real tokens, with and without padding."""
    from ftagent.tools.train.attention import register
    from transformers import AutoModelForCausalLM

    torch.manual_seed(0)
    load = lambda attn: AutoModelForCausalLM.from_pretrained(  # noqa: E731
        tiny_gemma2, attn_implementation=attn, dtype=torch.float32).eval()
    ours, eager = load(register()), load("eager")
    ids = torch.randint(10, 2000, (3, 12), generator=torch.Generator().manual_seed(1))
    real = torch.ones_like(ids)
    real[1, 7:] = 0
    real[2, 10:] = 0
    with torch.no_grad():
        for mask in (real, None):
            a = ours(input_ids=ids, attention_mask=mask).logits
            b = eager(input_ids=ids, attention_mask=mask).logits
            keep = (real if mask is not None else torch.ones_like(real)).bool()
            torch.testing.assert_close(a[keep], b[keep], atol=1e-5, rtol=0)
