"""The trainer's pieces on a tiny random Llama: per-example varlen attention, the selective
loss, the assistant-only loss mask, and real short runs of prompt tuning, prefix tuning and
QLoRA through `python -m ftagent.tools.train`."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

ROOT = Path(__file__).resolve().parents[1]


def tiny(path: Path, attn: str):
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path, attn_implementation=attn,
                                                dtype=torch.float32).eval()


def examples(*shapes: tuple[int, int], seed: int = 1) -> list[dict]:
    """Random token rows of (length, prompt length); prompt tokens carry no loss."""
    g = torch.Generator().manual_seed(seed)
    out = []
    for n, p in shapes:
        ids = torch.randint(10, 2000, (n,), generator=g).tolist()
        out.append({"input_ids": ids, "labels": [-100] * p + ids[p:]})
    return out


def collate(rows: list[dict], padding_free: bool) -> dict:
    from trl.trainer.sft_trainer import DataCollatorForLanguageModeling

    return DataCollatorForLanguageModeling(pad_token_id=0, padding_free=padding_free)(rows)


def model_inputs(batch: dict) -> dict:
    return {k: v for k, v in batch.items() if k != "labels"}


def test_varlen_attention_keeps_flattened_examples_apart(tiny_model):
    """Two examples flattened into one row (position_ids, cu_seq_lens_q/k, max_length_q/k as
    TRL's padding-free collator makes them) give each example's logits run alone; the same
    row through plain SDPA, which sees no boundaries, does not (so the check can fail)."""
    from ftagent.tools.train.attention import NAME, register

    assert register() == NAME
    varlen, sdpa = tiny(tiny_model, NAME), tiny(tiny_model, "sdpa")
    rows = examples((7, 0), (11, 0))
    batch = collate(rows, padding_free=True)
    assert batch["cu_seq_lens_q"].tolist() == [0, 7, 18] and batch["max_length_q"] == 11
    with torch.no_grad():
        flat = varlen(**model_inputs(batch)).logits[0]
        alone = [sdpa(input_ids=torch.tensor([r["input_ids"]])).logits[0] for r in rows]
        joined = sdpa(**model_inputs(batch)).logits[0]
    torch.testing.assert_close(flat[:7], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(flat[7:], alone[1], atol=1e-5, rtol=0)
    assert (joined[7:] - alone[1]).abs().max() > 1e-2  # attending across the boundary shows


def test_varlen_attention_keeps_sliding_windows_and_softcaps(tiny_gemma2):
    """A random Gemma 2 (a 4-token sliding window on alternate layers, attention logit
    soft-capping): flattened examples longer than the window give each example's logits run
    alone with eager attention, the reference implementation of both."""
    from ftagent.tools.train.attention import NAME, register

    torch.manual_seed(0)
    register()
    varlen, eager = tiny(tiny_gemma2, NAME), tiny(tiny_gemma2, "eager")
    rows = examples((9, 0), (13, 0))
    batch = collate(rows, padding_free=True)
    with torch.no_grad():
        flat = varlen(**model_inputs(batch)).logits[0]
        alone = [eager(input_ids=torch.tensor([r["input_ids"]])).logits[0] for r in rows]
    torch.testing.assert_close(flat[:9], alone[0], atol=1e-5, rtol=0)
    torch.testing.assert_close(flat[9:], alone[1], atol=1e-5, rtol=0)


def full_cross_entropy(model, batch: dict) -> torch.Tensor:
    logits = model(**model_inputs(batch)).logits[:, :-1]
    return F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(),
                           batch["labels"][:, 1:].reshape(-1), ignore_index=-100)


@pytest.mark.parametrize("padding_free", [False, True], ids=["padded", "padding_free"])
def test_selective_loss_equals_full_logits_cross_entropy(tiny_model, padding_free):
    """Loss, loss-token count, top-1 hits and gradients equal the plain cross entropy over
    all logits (mean over label tokens), on a right-padded batch with -100 prompt and pad
    labels and on a flattened padding-free row; num_items_in_batch divides the sum."""
    from ftagent.tools.train.attention import register
    from ftagent.tools.train.loss import selective_loss

    model = tiny(tiny_model, register() if padding_free else "sdpa")
    batch = collate(examples((9, 4), (14, 6), (5, 2)), padding_free)
    labels = batch["labels"][:, 1:]
    want_tokens = int((labels != -100).sum())
    assert want_tokens == 16 and bool((labels == -100).any())

    loss, n_tokens, correct = selective_loss(model, batch)
    loss.backward()
    got = {k: p.grad.clone() for k, p in model.named_parameters()}
    model.zero_grad()
    ref = full_cross_entropy(model, batch)
    ref.backward()
    assert n_tokens == want_tokens
    assert loss.item() == pytest.approx(ref.item(), rel=1e-5)
    with torch.no_grad():
        logits = model(**model_inputs(batch)).logits[:, :-1]
        hits = ((logits.argmax(-1) == labels) & (labels != -100)).sum()
        summed, _, _ = selective_loss(model, batch, num_items_in_batch=100)
    assert int(correct) == int(hits)
    assert summed.item() == pytest.approx(ref.item() * want_tokens / 100, rel=1e-5)
    for k, p in model.named_parameters():
        torch.testing.assert_close(got[k], p.grad, atol=1e-6, rtol=1e-4, msg=k)


def test_the_loss_mask_covers_exactly_the_assistant_answer(tiny_model, small_data, tmp_path):
    """The trainer tools.train builds (prompt/completion rows, padding-free SFTTrainer):
    in every tokenised row the tokens with a label decode to the assistant's answer plus
    `<|im_end|>` (and the template's newline after it), none of the system or user text;
    the padding-free collator keeps exactly those labels when it flattens a batch."""
    from datasets import load_dataset
    from ftagent.tools.config.train_config import apply_overrides, default_config
    from ftagent.tools.train.model import load_model, padding_free
    from ftagent.tools.train.recipe import _trainer_for, to_prompt_completion

    cfg = default_config(str(tiny_model), "lora", str(small_data), None, str(tmp_path / "out"),
                         30, 1_000_000, False)
    cfg = apply_overrides(cfg, {"report_to": [], "batch_size": 2})
    assert padding_free(cfg)
    raw = load_dataset("json", data_files={"train": cfg.train_file})["train"]
    ds = load_dataset("json", data_files={"train": cfg.train_file})
    ds = ds.map(to_prompt_completion, remove_columns=ds["train"].column_names)
    model, tokenizer = load_model(cfg)
    common = dict(output_dir=str(tmp_path / "out" / "checkpoints"), max_length=cfg.max_length,
                  per_device_train_batch_size=2, report_to="none", use_cpu=True, max_steps=1)
    trainer = _trainer_for(cfg, model, tokenizer, ds, common, [])
    data = trainer.train_dataset
    assert len(data) == len(raw) == 32

    for row, source in zip(data, raw, strict=True):
        msgs = source["messages"]
        assert msgs[-1]["role"] == "assistant"
        taught = tokenizer.decode([t for t, lab in zip(row["input_ids"], row["labels"],
                                                       strict=True) if lab != -100])
        assert taught in (msgs[-1]["content"] + "<|im_end|>",
                          msgs[-1]["content"] + "<|im_end|>\n"), taught
        for m in msgs[:-1]:
            assert m["content"] not in taught
        first = row["labels"].index(next(x for x in row["labels"] if x != -100))
        assert tokenizer.decode(row["input_ids"][:first]).endswith("<|im_start|>assistant\n")

    batch = trainer.data_collator([data[0], data[1]])
    assert "attention_mask" not in batch and batch["input_ids"].shape[0] == 1
    flat = [t for t, lab in zip(batch["input_ids"][0].tolist(), batch["labels"][0].tolist(),
                                strict=True) if lab != -100]
    want = [t for r in (data[0], data[1])
            for t, lab in zip(r["input_ids"], r["labels"], strict=True) if lab != -100]
    assert flat == want


def train_briefly(tmp_path: Path, model: Path, data: Path, method: str, **overrides) -> Path:
    """A real 3-step run (checkpoint every step, no warm-up so every step moves weights)."""
    from ftagent.tools.config.train_config import apply_overrides, default_config, save_config

    out = tmp_path / "out"
    cfg = default_config(str(model), method, str(data), None, str(out), 30, 1_000_000, False)
    cfg = apply_overrides(cfg, {"max_steps": 3, "save_steps": 1, "batch_size": 2,
                                "warmup_ratio": 0.0, "report_to": [], **overrides})
    config = save_config(cfg, tmp_path / "c.yaml")
    r = subprocess.run([sys.executable, "-m", "ftagent.tools.train", str(config)], cwd=ROOT,
                       capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-4000:]
    result = json.loads((out / "result.json").read_text())
    assert result["method"] == method and result["global_step"] == 3
    steps = [x for x in map(json.loads, (out / "metrics.jsonl").read_text().splitlines())
             if "loss" in x]
    assert [x["step"] for x in steps] == [1, 2, 3]
    assert all(x["grad_norm"] > 0 and x["learning_rate"] > 0 for x in steps)
    assert result["anomalies"] == []
    return out


def changed_between_checkpoints(out: Path) -> bool:
    """The trainable weights of checkpoint-2 and checkpoint-3 differ (an update happened)."""
    from safetensors.torch import load_file

    a = load_file(out / "checkpoints" / "checkpoint-2" / "adapter_model.safetensors")
    b = load_file(out / "checkpoints" / "checkpoint-3" / "adapter_model.safetensors")
    return a.keys() == b.keys() and any(not torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize("method,peft_type", [("prompt_tuning", "PROMPT_TUNING"),
                                              ("prefix_tuning", "PREFIX_TUNING")])
def test_prompt_and_prefix_tuning_train_and_save_an_adapter(
        tiny_model, small_data, tmp_path, method, peft_type):
    """3 real steps with 4 virtual tokens: padded rows (not padding-free), weights updated,
    an adapter of the right peft_type saved, and loading it changes the model's logits (the
    virtual tokens are really attended to)."""
    out = train_briefly(tmp_path, tiny_model, small_data, method,
                        **{"prompt_learning.num_virtual_tokens": 4})
    result = json.loads((out / "result.json").read_text())
    assert result["effective"]["padding_free"] is False
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == peft_type and adapter["num_virtual_tokens"] == 4
    assert changed_between_checkpoints(out)

    from peft import PeftModel

    base = tiny(tiny_model, "sdpa")
    ids = torch.tensor([[1, 2, 3, 4, 5]])
    with torch.no_grad():
        plain = base(input_ids=ids).logits
        tuned = PeftModel.from_pretrained(base, out / "adapter").eval()(input_ids=ids).logits
    # Prompt tuning returns logits for the virtual tokens too, ahead of the input's.
    assert tuned.shape[1] == 5 + (4 if method == "prompt_tuning" else 0)
    assert (tuned[:, -5:] - plain).abs().max() > 1e-4


def test_qlora_trains_on_a_4bit_base(tiny_model, small_data, tmp_path):
    """method qlora: the base loads as bitsandbytes 4-bit (nf4) layers, and a real 3-step run
    updates the LoRA weights and saves a LoRA adapter."""
    from ftagent.tools.config.train_config import default_config
    from ftagent.tools.train.model import load_model

    try:
        import bitsandbytes as bnb
    except ImportError as exc:  # pragma: no cover - a dependency of the project
        pytest.skip(f"bitsandbytes is not importable: {exc}")
    cfg = default_config(str(tiny_model), "qlora", str(small_data), None, str(tmp_path / "x"),
                         30, 1_000_000, False)
    model, _ = load_model(cfg)
    four_bit = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    assert len(four_bit) == 2 * 7  # q, k, v, o, gate, up, down in each of the 2 layers
    assert four_bit[0].weight.quant_state.quant_type == "nf4"
    del model

    out = train_briefly(tmp_path, tiny_model, small_data, "qlora")
    adapter = json.loads((out / "adapter" / "adapter_config.json").read_text())
    assert adapter["peft_type"] == "LORA" and adapter["r"] == 16
    assert (out / "adapter" / "adapter_model.safetensors").exists()
    assert changed_between_checkpoints(out)
