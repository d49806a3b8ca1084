"""Token lengths with the base model's own chat template, and the loss preview: which
tokens of an example carry loss (the assistant's answer), shown before training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from ftagent.tools.data.facts import MIN_SHARED_PREFIX, TokenFacts

PERCENTILES = (50, 90, 95, 99, 100)
# Rows the token facts are measured on (spread over the data): the mean and the shared
# prefix settle long before this, and a pre-flight stays within a second or two.
FACTS_SAMPLE = 2000


@dataclass(slots=True)
class Lengths:
    prompt: int  # tokens before the answer (incl. the assistant header)
    total: int


def load_tokenizer(model: str):
    from ftagent.tools.models import resolve_model
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(resolve_model(model).path)


def _ids(encoded) -> list[int]:
    return list(encoded["input_ids"] if hasattr(encoded, "keys") else encoded)


def split_prompt_answer(tokenizer, messages: list[dict]) -> tuple[list[int], list[int]]:
    """(prompt ids, full ids). The answer is full[len(prompt):] when the template renders
    the prompt as a prefix of the full conversation, as chat templates should."""
    prompt = _ids(tokenizer.apply_chat_template(messages[:-1], add_generation_prompt=True))
    full = _ids(tokenizer.apply_chat_template(messages))
    return prompt, full


def conversation(example: dict) -> list[dict]:
    return example["messages"] if "messages" in example else example["prompt"] + example["chosen"]


def measure(tokenizer, examples: list[dict]) -> list[Lengths]:
    """Token lengths of many examples at once: the template renders text in Python, the
    fast tokenizer then encodes the whole batch in Rust."""
    if not examples:
        return []
    convs = [conversation(ex) for ex in examples]
    full_text = tokenizer.apply_chat_template(convs, tokenize=False)
    prompt_text = tokenizer.apply_chat_template(
        [c[:-1] for c in convs], tokenize=False, add_generation_prompt=True
    )
    full = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    prompt = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
    return [Lengths(prompt=len(p), total=len(f)) for p, f in zip(prompt, full, strict=True)]


def _spread(rows: list, k: int) -> list:
    if len(rows) <= k:
        return list(rows)
    step = len(rows) / k
    return [rows[int(i * step)] for i in range(k)]


def common_prefix(a: list[int], b: list[int], cap: int) -> int:
    """How many leading tokens two rows share, at most `cap`."""
    n = min(len(a), len(b), cap)
    i = 0
    while i < n and a[i] == b[i]:
        i += 1
    return i


def token_facts(tokenizer, examples: list[dict], sample: int = FACTS_SAMPLE) -> TokenFacts | None:
    """Mean and longest row, loss tokens per row and the prefix every row shares, over a
    spread sample of chat (or preference) examples rendered with the model's chat template,
    as the trainer tokenises them: the answer (the last message) carries the loss. The shared
    prefix ends before the token that predicts a row's first loss token (that position's
    logits are the row's own), and counts only from MIN_SHARED_PREFIX tokens, as the
    trainer's shared-prefix batches do. None when there are no examples."""
    rows = _spread(examples, sample)
    if not rows:
        return None
    convs = [conversation(ex) for ex in rows]
    full_text = tokenizer.apply_chat_template(convs, tokenize=False)
    prompt_text = tokenizer.apply_chat_template(
        [c[:-1] for c in convs], tokenize=False, add_generation_prompt=True
    )
    full = tokenizer(full_text, add_special_tokens=False)["input_ids"]
    prompt = [len(p) for p in tokenizer(prompt_text, add_special_tokens=False)["input_ids"]]
    totals = [len(f) for f in full]
    losses = [max(0, t - p) for t, p in zip(totals, prompt, strict=True)]
    shared = max(0, min(prompt) - 1)  # the prefix stops before the first loss predictor
    for ids in full[1:]:
        shared = common_prefix(full[0], ids, shared)
    if len(full) < 2 or shared < MIN_SHARED_PREFIX:
        shared = 0
    longest = max(range(len(totals)), key=totals.__getitem__)
    return TokenFacts(
        rows=len(rows), mean=round(sum(totals) / len(totals), 1), longest=totals[longest],
        loss_mean=round(sum(losses) / len(losses), 1), loss_longest=losses[longest],
        shared_prefix=shared,
    )


def file_token_facts(path, tokenizer, sample: int = FACTS_SAMPLE) -> TokenFacts | None:
    """`token_facts` of a training file (chat rows, or prompt/chosen/rejected rows); None
    when it holds none (the data checks say why)."""
    import json
    from pathlib import Path

    rows = []
    with Path(path).open(encoding="utf-8") as f:
        for line in f:
            try:
                row = json.loads(line)
            except ValueError:
                continue
            if isinstance(row, dict) and ("messages" in row or "chosen" in row):
                rows.append(row)
    return token_facts(tokenizer, rows, sample)


def train_file_facts(train_file, model) -> TokenFacts | None:
    """`file_token_facts` with the model's own tokenizer (a local folder or a name ftagent
    resolves); None when the file, the model or its chat template cannot be read (the
    pre-flight's data and model checks say which)."""
    from ftagent.tools.models import ModelNotFoundError

    try:
        tokenizer = load_tokenizer(str(model))
        return file_token_facts(train_file, tokenizer)
    except (ModelNotFoundError, OSError, ValueError, TypeError, KeyError, ImportError):
        return None


def percentile_table(lengths: list[int]) -> dict[str, int]:
    if not lengths:
        return {}
    arr = np.asarray(lengths)
    return {f"p{p}": int(np.percentile(arr, p)) for p in PERCENTILES} | {"mean": int(arr.mean())}


def histogram(lengths: list[int], bins: int = 10) -> list[tuple[int, int, int]]:
    """(low, high, count) rows for a terminal histogram."""
    if not lengths:
        return []
    counts, edges = np.histogram(np.asarray(lengths), bins=bins)
    return [(int(edges[i]), int(edges[i + 1]), int(c)) for i, c in enumerate(counts)]


def loss_preview(tokenizer, example: dict, max_length: int) -> dict:
    """The example as the model will see it, split at the first loss-carrying token."""
    prompt, full = split_prompt_answer(tokenizer, conversation(example))
    is_prefix = full[: len(prompt)] == prompt
    kept = full[:max_length]
    loss_ids = kept[len(prompt) :] if is_prefix else []
    return {
        "prompt": tokenizer.decode(kept[: len(prompt)]),
        "loss": tokenizer.decode(loss_ids),
        "loss_tokens": len(loss_ids),
        "total_tokens": len(full),
        "template_prefix_ok": is_prefix,
        "answer_cut": len(full) > max_length,
    }


def mask_problem(preview: dict) -> str | None:
    """A loss-masking mistake visible in a preview, said in words, or None."""
    if not preview["template_prefix_ok"]:
        return "the chat template does not render the prompt as a prefix of the conversation"
    if preview["loss_tokens"] == 0:
        return "no token carries loss (the answer is empty or cut away)"
    return None
