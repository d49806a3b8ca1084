"""A finished training attempt in a few lines for a person: losses, speed, anomalies,
warnings, checkpoints. Pure text from the recipe's result.json, shown at the training gate
and in the terminal app."""

from __future__ import annotations


def training_summary(r: dict) -> str:
    """Losses, speed, anomalies and checkpoints of a finished attempt, for the gate."""
    lines = [f"{r['global_step']} steps in {r['wall_s']:.0f}s; mean train loss "
             f"{r['train_loss']:.4f}"
             + (f", last steps {r['final_train_loss']:.4f}" if r.get("final_train_loss") else "")]
    if r.get("final_eval_loss") is not None:
        best = r.get("best_eval_loss")
        lines.append(f"validation loss: final {r['final_eval_loss']:.4f}"
                     + (f", best {best:.4f} at step {r['best_eval_step']}" if best else ""))
    if r.get("tokens_per_s"):
        lines.append(f"speed: {r['tokens_per_s']:.0f} tokens/s")
    if r.get("tokens_saved_by_sharing") and r.get("tokens"):
        saved = r["tokens_saved_by_sharing"]
        lines.append(f"shared prefixes: {saved:,.0f} of {r['tokens']:,.0f} tokens "
                     f"({saved / r['tokens']:.0%}) computed once per micro-batch instead of "
                     "once per row")
    for a in r.get("anomalies", []):
        lines.append(f"anomaly ({a.get('kind')}): {a.get('message')} {a.get('fix', '')}".strip())
    for w in r.get("warnings", []):
        lines.append(f"warning: {w}")
    if r.get("loss_plot"):
        lines.append(f"loss curve: {r['loss_plot']}")
    if r.get("checkpoints"):
        kept = r.get("best_checkpoint") or r["checkpoints"][-1]
        lines.append(f"checkpoints: {len(r['checkpoints'])} kept; best/last {kept}")
    return "\n".join(lines)
