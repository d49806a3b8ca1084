"""Token lengths with the base model's own chat template, and the loss preview: which
tokens of an example carry loss (the assistant's answer), shown before training."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

PERCENTILES = (50, 90, 95, 99, 100)


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
