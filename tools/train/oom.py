"""Out-of-memory back-off (pure): a smaller micro-batch with the same effective batch."""

from __future__ import annotations

MAX_RETRIES = 3


def backoff(batch_size: int, grad_accum: int, gradient_checkpointing: bool) -> dict | None:
    """The next settings to try after CUDA ran out of memory, or None when nothing is left
    to give: halve the micro-batch while doubling accumulation, so examples per optimizer
    step (and the lr schedule) stay the same, and turn gradient checkpointing on."""
    if batch_size > 1 and batch_size % 2 == 0:
        return {"batch_size": batch_size // 2, "grad_accum": grad_accum * 2,
                "gradient_checkpointing": True}
    if not gradient_checkpointing:
        return {"batch_size": batch_size, "grad_accum": grad_accum,
                "gradient_checkpointing": True}
    return None


def describe(old: dict, new: dict) -> str:
    parts = []
    if new["gradient_checkpointing"] and not old["gradient_checkpointing"]:
        parts.append("gradient checkpointing on")
    if new["batch_size"] != old["batch_size"]:
        parts.append(f"micro-batch {old['batch_size']} -> {new['batch_size']}, gradient "
                     f"accumulation {old['grad_accum']} -> {new['grad_accum']} (same "
                     f"{new['batch_size'] * new['grad_accum']} examples per step)")
    return "out of GPU memory: retrying from the last checkpoint with " + "; ".join(parts)
