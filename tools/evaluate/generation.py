"""Greedy generation for evaluation: batched (fast) and one-by-one (the reference).

Both paths tokenize with the model's chat template, decode greedily and stop at every EOS id
the tokenizer or the generation config knows, so the only difference between them is
batching. Batching sorts prompts by token length (similar lengths share a batch, so little
padding), left-pads by hand (the tokenizer's `padding_side` is never mutated) and returns the
answers in input order. transformers derives position ids from the attention mask, so a
left-padded prompt sees the same positions as the same prompt alone.

Batched and one-by-one greedy outputs are equal up to floating point: a different batch
shape or padded key length changes the order of reductions in matmul/attention kernels, and
where the top two logits are nearly tied the argmax can flip. fp32 keeps such flips rare;
bf16 makes them common. `evals/bench/generation.py` counts them on real prompts.
"""

from __future__ import annotations

from collections.abc import Sequence

DEFAULT_MAX_NEW_TOKENS = 32
DEFAULT_BATCH_SIZE = 16


def eos_ids(model, tokenizer) -> list[int]:
    """Every stop id: the tokenizer's EOS plus the generation config's (an int or a list)."""
    ids: list[int] = []
    gen = getattr(getattr(model, "generation_config", None), "eos_token_id", None)
    for x in [tokenizer.eos_token_id, *(gen if isinstance(gen, list | tuple) else [gen])]:
        if x is not None and int(x) not in ids:
            ids.append(int(x))
    return ids


def pad_id(model, tokenizer) -> int:
    """Tokenizer pad, else the generation config's, else the first EOS (SmolLM2: pad == EOS)."""
    for x in (tokenizer.pad_token_id, getattr(model.generation_config, "pad_token_id", None)):
        if x is not None:
            return int(x)
    return eos_ids(model, tokenizer)[0]


def prompt_ids(tokenizer, conversations: Sequence[list[dict]]) -> list[list[int]]:
    """Chat-template token ids with the assistant header appended (no extra BOS added)."""
    out = []
    for conv in conversations:
        text = tokenizer.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
        out.append(tokenizer(text, add_special_tokens=False)["input_ids"])
    return out


def left_pad(batch: list[list[int]], pad: int):
    """Left-padded `input_ids` and `attention_mask` tensors: prompts end where generation starts."""
    import torch

    width = max(map(len, batch))
    ids = torch.full((len(batch), width), pad, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for i, row in enumerate(batch):
        ids[i, width - len(row) :] = torch.tensor(row, dtype=torch.long)
        mask[i, width - len(row) :] = 1
    return ids, mask


def _decode(tokenizer, new_tokens, stops: list[int]) -> tuple[str, int]:
    """Text up to the first stop id (pads after EOS are EOS ids too) and its token count."""
    toks = new_tokens.tolist()
    n = next((i for i, t in enumerate(toks) if t in stops), len(toks))
    return tokenizer.decode(toks[:n], skip_special_tokens=True).strip(), n


def _generate_ids(model, ids, mask, max_new_tokens: int, stops: list[int], pad: int,
                  past_key_values=None):
    import torch

    with torch.inference_mode():
        out = model.generate(
            input_ids=ids.to(model.device),
            attention_mask=mask.to(model.device),
            max_new_tokens=max_new_tokens,
            do_sample=False,
            num_beams=1,
            temperature=None,
            top_p=None,
            top_k=None,
            eos_token_id=stops,
            pad_token_id=pad,
            past_key_values=past_key_values,
        )
    return out[:, ids.shape[1] :].cpu()


def generate(
    model,
    tokenizer,
    conversations: Sequence[list[dict]],
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    batch_size: int = DEFAULT_BATCH_SIZE,
    stats: dict | None = None,
    share_prefix: bool = True,
) -> list[str]:
    """Greedy answers, batched by sorted prompt length, in input order.

    `share_prefix`: the tokens every prompt starts with run once (`prefix_cache`) when
    that saves enough. `stats`, when given, receives `new_tokens` (generated tokens up to
    EOS, summed), `padding` (pad tokens fed in) and `shared_prefix` (tokens run once).
    """
    from ftagent.tools.evaluate.prefix_cache import find_shared_prefix, with_prefix

    model.eval()
    stops, pad = eos_ids(model, tokenizer), pad_id(model, tokenizer)
    prompts = prompt_ids(tokenizer, conversations)
    shared = (find_shared_prefix(model, prompts, min(map(len, prompts), default=1) - 1,
                                 batch_size) if share_prefix else None)
    p = len(shared) if shared else 0
    order = sorted(range(len(prompts)), key=lambda i: len(prompts[i]))
    answers: list[str | None] = [None] * len(prompts)
    new_total = padding = 0
    for start in range(0, len(order), batch_size):
        idx = order[start : start + batch_size]
        ids, mask = left_pad([prompts[i][p:] for i in idx], pad)
        padding += int((mask == 0).sum())
        cache = None
        if shared:
            ids, mask = with_prefix(shared, ids, mask)
            cache = shared.for_batch(len(idx))
        new = _generate_ids(model, ids, mask, max_new_tokens, stops, pad, cache)
        for row, i in enumerate(idx):
            answers[i], n = _decode(tokenizer, new[row], stops)
            new_total += n
    if stats is not None:
        stats.update(new_tokens=new_total, padding=padding, shared_prefix=p)
    return answers  # type: ignore[return-value]


def generate_one_by_one(
    model,
    tokenizer,
    conversations: Sequence[list[dict]],
    max_new_tokens: int = DEFAULT_MAX_NEW_TOKENS,
    stats: dict | None = None,
) -> list[str]:
    """The naive loop (one prompt per `generate` call, no padding): the reference outputs."""
    model.eval()
    stops, pad = eos_ids(model, tokenizer), pad_id(model, tokenizer)
    answers, new_total = [], 0
    for row in prompt_ids(tokenizer, conversations):
        ids, mask = left_pad([row], pad)
        new = _generate_ids(model, ids, mask, max_new_tokens, stops, pad)
        text, n = _decode(tokenizer, new[0], stops)
        answers.append(text)
        new_total += n
    if stats is not None:
        stats.update(new_tokens=new_total, padding=0)
    return answers
