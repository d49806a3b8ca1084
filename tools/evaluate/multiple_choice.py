"""Multiple-choice scoring by per-option log-likelihood, no generation: the forgetting
check (ARC-Easy) measures what the model knows, not how it formats an answer."""

from __future__ import annotations

from pydantic import BaseModel

# Default: the unnormalised sum of option log-probs, lm-eval-harness's `acc` (its primary
# ARC metric). Alternatives, all reported in `by_norm`: "char" divides by the option's
# length in characters (lm-eval's `acc_norm`), "token" by its token count (tokenizer-
# dependent). Sums favour short options, yet on the bundled 100 questions SmolLM2-135M
# scores 59% by sum vs 47% by char and 45% by token: further from chance (25%) means a
# forgetting check with more signal. Base and tuned share a tokenizer, so any one norm
# is a fair comparison as long as both use it.
MC_NORMS = ("sum", "char", "token")
DEFAULT_NORM = "sum"


def mc_context(row: dict) -> str:
    """lm-eval-harness's ARC prompt: plain text, no chat template, so the score is the
    model's knowledge rather than its instruction-following."""
    return f"Question: {row['question']['stem']}\nAnswer:"


def _option_logprobs(model, tokenizer, pairs: list[tuple[list[int], list[int]]]) -> list[float]:
    """Sum of log p(continuation | context) per (context_ids, continuation_ids) pair.

    Left-padded so every continuation ends at the last position: only the logits of the
    last max-continuation positions are materialised (`logits_to_keep`), which keeps a
    49k-vocab forward pass small. position_ids are passed so padding does not shift them.
    """
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    seqs = [c + o for c, o in pairs]
    width = max(len(s) for s in seqs)
    keep = max(len(o) for _, o in pairs) + 1
    ids = torch.full((len(seqs), width), pad, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for j, s in enumerate(seqs):
        ids[j, width - len(s) :] = torch.tensor(s)
        mask[j, width - len(s) :] = 1
    pos = (mask.cumsum(-1) - 1).clamp(min=0)
    device = getattr(model, "device", "cpu")
    with torch.inference_mode():
        out = model(
            input_ids=ids.to(device),
            attention_mask=mask.to(device),
            position_ids=pos.to(device),
            logits_to_keep=keep,
        )
    logp = out.logits[:, -keep:].float().log_softmax(-1).cpu()
    sums = []
    for j, (_, o) in enumerate(pairs):
        # logits at position t predict token t+1: the option's n tokens are predicted by
        # the n positions before the end.
        pred = logp[j, keep - 1 - len(o) : keep - 1]
        sums.append(float(pred.gather(-1, torch.tensor(o)[:, None]).sum()))
    return sums


class MCResult(BaseModel):
    accuracy: float  # under `norm`
    norm: str
    by_norm: dict[str, float]  # accuracy under each of MC_NORMS
    n: int
    predictions: list[str]  # predicted label per row, under `norm`


def multiple_choice_scores(
    model, tokenizer, rows: list[dict], batch_size: int = 8, norm: str = DEFAULT_NORM
) -> MCResult:
    """Score ARC-style rows by each option's log-likelihood given the question.

    `batch_size` counts questions per forward pass (all their options go together).
    Options are " " + text after "Answer:", tokenised apart from the context (as
    lm-eval does) so the option's tokens are exactly what is scored."""
    if norm not in MC_NORMS:
        raise ValueError(f"norm must be one of {MC_NORMS}, got {norm!r}")
    correct = dict.fromkeys(MC_NORMS, 0)
    predictions: list[str] = []
    for i in range(0, len(rows), batch_size):
        batch = rows[i : i + batch_size]
        pairs, owners = [], []
        for k, row in enumerate(batch):
            ctx = tokenizer(mc_context(row), add_special_tokens=False)["input_ids"]
            for ch in row["question"]["choices"]:
                opt = tokenizer(" " + ch["text"].strip(), add_special_tokens=False)["input_ids"]
                pairs.append((ctx, opt))
                owners.append((k, ch["label"], len(" " + ch["text"].strip()), len(opt)))
        sums = _option_logprobs(model, tokenizer, pairs)
        for k, row in enumerate(batch):
            opts = [(o, s) for o, s in zip(owners, sums, strict=True) if o[0] == k]
            scored = {
                "sum": [s for _, s in opts],
                "token": [s / n_tok for (_, _, _, n_tok), s in opts],
                "char": [s / n_chr for (_, _, n_chr, _), s in opts],
            }
            for name, values in scored.items():
                best = opts[max(range(len(values)), key=values.__getitem__)][0][1]
                correct[name] += best == str(row["answerKey"])
                if name == norm:
                    predictions.append(best)
    n = max(len(rows), 1)
    by_norm = {k: correct[k] / n for k in MC_NORMS}
    return MCResult(
        accuracy=by_norm[norm], norm=norm, by_norm=by_norm, n=len(rows), predictions=predictions
    )


def multiple_choice_accuracy(
    model, tokenizer, rows: list[dict], batch_size: int = 8, norm: str = DEFAULT_NORM
) -> float:
    """Accuracy (0..1) on ARC-style rows under `norm`; see `multiple_choice_scores`."""
    return multiple_choice_scores(model, tokenizer, rows, batch_size, norm).accuracy
