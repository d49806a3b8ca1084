"""Log-likelihood of answers under a model: the number training lowers, so held-out
loss, preference pairs and the merge check all measure the model the same way.

Rows are left-padded so every answer ends at the last column: the vocabulary projection
then runs only over the columns that hold answer tokens (`logits_to_keep`), not over the
whole prompt (for a 570-token label list in front of a 5-token label, the projection
alone cost more than the rest of the model). Positions come from the attention mask, so
padding shifts nothing; a prefix every row shares runs once (`prefix_cache`)."""

from __future__ import annotations

from ftagent.tools.data.tokens import split_prompt_answer
from ftagent.tools.evaluate.prefix_cache import find_shared_prefix, with_prefix


def answer_nll(model, tokenizer, conversations: list[list[dict]],
               batch_size: int = 8, share_prefix: bool = True) -> list[tuple[float, int]]:
    """Per conversation: summed NLL of the last assistant turn's tokens, and their count."""
    import torch

    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    split = [split_prompt_answer(tokenizer, m) for m in conversations]
    seqs = [full for _, full in split]
    starts = [len(prompt) for prompt, _ in split]
    # The cap keeps each row's first answer token predicted from its own tokens.
    shared = (find_shared_prefix(model, seqs, min(starts, default=1) - 1, batch_size)
              if share_prefix else None)
    p = len(shared) if shared else 0
    out: list[tuple[float, int]] = []
    for i in range(0, len(seqs), batch_size):
        own = [s[p:] for s in seqs[i : i + batch_size]]
        width = max(map(len, own))
        ids = torch.full((len(own), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        first = []  # padded column of each row's first answer token
        for j, s in enumerate(own):
            ids[j, width - len(s):] = torch.tensor(s)
            mask[j, width - len(s):] = 1
            first.append(width - len(s) + starts[i + j] - p)
        kw = {}
        full_mask = mask
        if shared:
            _, full_mask = with_prefix(shared, ids, mask)
            kw["past_key_values"] = shared.for_batch(len(own))
        positions = (full_mask.cumsum(-1) - 1).clamp(min=0)[:, p:]
        keep = width - min(first) + 1  # columns from the one before the earliest answer
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device),
                           attention_mask=full_mask.to(model.device),
                           position_ids=positions.to(model.device),
                           logits_to_keep=keep, **kw).logits.float().cpu()
        offset = width - keep  # column of logits[:, 0]
        for j, f in enumerate(first):
            rows = logits[j, f - 1 - offset : width - 1 - offset]
            target = ids[j, f:width]
            nll = torch.nn.functional.cross_entropy(rows, target, reduction="sum")
            out.append((float(nll), int(target.numel())))
    return out


def completion_loss(model, tokenizer, rows: list[dict], batch_size: int = 8) -> float:
    """Mean NLL per answer token of the last assistant turn (what training optimises)."""
    per_row = answer_nll(model, tokenizer, [r["messages"] for r in rows], batch_size)
    return sum(s for s, _ in per_row) / max(sum(n for _, n in per_row), 1)
