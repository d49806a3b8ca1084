"""Prove a merge did not change the model: the merged folder against base + adapter.

Two checks, both on held-out data: the logits of the two models on the same prompts (max
absolute difference within a tolerance set by the merged weights' dtype), and the
perplexity of the answers (`completion_loss`, what training optimised) within 1%.
"""

from __future__ import annotations

import math
from pathlib import Path

from pydantic import BaseModel

# Rounding float32 merged weights to a narrower dtype moves logits by about this much on
# small models; float32 itself only reorders additions (B@A added once vs on the fly).
LOGIT_ATOL = {"float32": 1e-3, "float16": 5e-2, "bfloat16": 5e-1}
PPL_TOLERANCE = 0.01

DEFAULT_PROMPTS = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "Answer briefly."},
     {"role": "user", "content": "My card has not arrived yet. What should I do?"}],
]


class MergeCheck(BaseModel):
    ok: bool
    merged_dtype: str
    n_prompts: int
    max_abs_logit_diff: float
    logit_tolerance: float
    n_rows: int = 0  # test rows the perplexity was measured on (0: not measured)
    loss_reference: float | None = None
    loss_merged: float | None = None
    perplexity_reference: float | None = None
    perplexity_merged: float | None = None
    perplexity_rel_diff: float | None = None
    perplexity_tolerance: float = PPL_TOLERANCE
    problems: list[str] = []

    def summary(self) -> str:
        said = (f"max |logit diff| {self.max_abs_logit_diff:.2e} on {self.n_prompts} prompts "
                f"(tolerance {self.logit_tolerance:g}, {self.merged_dtype})")
        if self.perplexity_rel_diff is not None:
            said += (f"; perplexity {self.perplexity_merged:.4f} merged vs "
                     f"{self.perplexity_reference:.4f} base+adapter "
                     f"({self.perplexity_rel_diff:+.3%}, "
                     f"tolerance {self.perplexity_tolerance:.0%})")
        return ("merge verified: " if self.ok else "merge changed the model: ") + said


def _max_logit_diff(reference, merged, tokenizer, prompts: list[list[dict]]) -> float:
    import torch

    worst = 0.0
    for messages in prompts:
        ids = tokenizer.apply_chat_template(messages, add_generation_prompt=True,
                                            return_tensors="pt", return_dict=True)["input_ids"]
        with torch.inference_mode():
            a = reference(input_ids=ids).logits.float()
            b = merged(input_ids=ids).logits.float()
        worst = max(worst, float((a - b).abs().max()))
    return worst


def verify_merge(
    base_path: str | Path,
    adapter_path: str | Path,
    merged_path: str | Path,
    rows: list[dict] | None = None,
    n_prompts: int = 8,
    ppl_tolerance: float = PPL_TOLERANCE,
    logit_atol: float | None = None,
) -> MergeCheck:
    """Compare the merged folder with base + adapter (unmerged, float32) on the prompts of
    `rows` (chat rows, the last turn being the answer) and on their answers' perplexity.
    Without rows, a few fixed prompts are compared and perplexity is not measured."""
    from ftagent.tools.deploy.merge import base_dtype
    from ftagent.tools.evaluate.compare import load_plain, load_tuned
    from ftagent.tools.evaluate.likelihood import completion_loss

    rows = rows or []
    dtype = base_dtype(merged_path)
    atol = logit_atol if logit_atol is not None else LOGIT_ATOL[dtype]
    reference, _ = load_tuned(base_path, adapter_path)
    merged, tokenizer = load_plain(merged_path)  # upcast to float32: only the merge differs
    prompts = [r["messages"][:-1] for r in rows[:n_prompts]] or DEFAULT_PROMPTS
    diff = _max_logit_diff(reference, merged, tokenizer, prompts)
    check = MergeCheck(ok=True, merged_dtype=dtype, n_prompts=len(prompts),
                       max_abs_logit_diff=diff, logit_tolerance=atol,
                       perplexity_tolerance=ppl_tolerance)
    if not diff <= atol:  # also catches NaN
        check.problems.append(f"logits differ by up to {diff:.3g} (tolerance {atol:g})")
    if rows:
        ref_loss = completion_loss(reference, tokenizer, rows)
        new_loss = completion_loss(merged, tokenizer, rows)
        ref_ppl, new_ppl = math.exp(min(ref_loss, 50)), math.exp(min(new_loss, 50))
        rel = (new_ppl - ref_ppl) / ref_ppl
        check.n_rows = len(rows)
        check.loss_reference, check.loss_merged = ref_loss, new_loss
        check.perplexity_reference, check.perplexity_merged = ref_ppl, new_ppl
        check.perplexity_rel_diff = rel
        if not abs(rel) <= ppl_tolerance:
            check.problems.append(f"perplexity {new_ppl:.4f} vs {ref_ppl:.4f} ({rel:+.2%}, "
                                  f"tolerance {ppl_tolerance:.0%})")
    check.ok = not check.problems
    return check
