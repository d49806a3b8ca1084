"""Log-likelihood of answers under a model: the number training lowers, so held-out
loss, preference pairs and the merge check all measure the model the same way."""

from __future__ import annotations

from ftagent.tools.data.tokens import split_prompt_answer


def answer_nll(model, tokenizer, conversations: list[list[dict]],
               batch_size: int = 8) -> list[tuple[float, int]]:
    """Per conversation: summed NLL of the last assistant turn's tokens, and their count."""
    import torch

    out: list[tuple[float, int]] = []
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    for i in range(0, len(conversations), batch_size):
        seqs, starts = [], []
        for messages in conversations[i : i + batch_size]:
            prompt_ids, full_ids = split_prompt_answer(tokenizer, messages)
            seqs.append(full_ids)
            starts.append(len(prompt_ids))
        width = max(len(s) for s in seqs)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros_like(ids)
        labels = torch.full_like(ids, -100)
        for j, (s, st) in enumerate(zip(seqs, starts, strict=True)):
            ids[j, : len(s)] = torch.tensor(s)
            mask[j, : len(s)] = 1
            labels[j, st : len(s)] = torch.tensor(s[st:])
        with torch.inference_mode():
            logits = model(input_ids=ids.to(model.device),
                           attention_mask=mask.to(model.device)).logits.float().cpu()
        shift_logits, shift_labels = logits[:, :-1], labels[:, 1:]
        nll = torch.nn.functional.cross_entropy(
            shift_logits.transpose(1, 2), shift_labels, ignore_index=-100, reduction="none"
        )
        for j in range(len(seqs)):
            out.append((float(nll[j].sum()), int((shift_labels[j] != -100).sum())))
    return out


def completion_loss(model, tokenizer, rows: list[dict], batch_size: int = 8) -> float:
    """Mean NLL per answer token of the last assistant turn (what training optimises)."""
    per_row = answer_nll(model, tokenizer, [r["messages"] for r in rows], batch_size)
    return sum(s for s, _ in per_row) / max(sum(n for _, n in per_row), 1)
