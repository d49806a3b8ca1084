"""Checkpoints a resume can trust.

The Trainer writes a checkpoint file by file (weights, optimizer, scheduler, RNG state,
trainer_state.json last); a run killed meanwhile leaves a folder that looks like a
checkpoint. After the Trainer has finished one, a `COMPLETE` marker is written atomically
(with fsync) inside it, and only marked folders are resumed from: to a reader, a
checkpoint appears whole or not at all.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

from ftagent.tools.atomic import write_json

MARKER = "COMPLETE"


def is_complete(path: Path) -> bool:
    return (path / MARKER).is_file()


def checkpoint_step(path: Path) -> int:
    """The step in a `checkpoint-<step>` folder's name; -1 for any other name."""
    step = Path(path).name.removeprefix("checkpoint-")
    return int(step) if step.isdigit() else -1


def last_complete_checkpoint(ckpt_dir: Path) -> str | None:
    """The newest fully written checkpoint under `ckpt_dir`, or None."""
    if not Path(ckpt_dir).is_dir():
        return None
    found = []
    for path in Path(ckpt_dir).glob("checkpoint-*"):
        step = path.name.removeprefix("checkpoint-")
        if step.isdigit() and is_complete(path):
            found.append((int(step), path))
    return str(max(found)[1]) if found else None


def mark_complete(path: Path, step: int) -> None:
    """Flush the checkpoint's files to disk, then write the marker."""
    for f in Path(path).rglob("*"):
        if f.is_file():
            fd = os.open(f, os.O_RDONLY)
            try:
                os.fsync(fd)
            finally:
                os.close(fd)
    state = json.loads((Path(path) / "trainer_state.json").read_text())  # must parse
    write_json(Path(path) / MARKER, {"step": step, "global_step": state.get("global_step")})


def with_complete_markers(cls):
    """The trainer class that marks each checkpoint complete after writing it."""

    class Marked(cls):
        def _save_checkpoint(self, model, trial):
            super()._save_checkpoint(model, trial)
            # Every rank writes its own RNG state into the folder, on whichever machine it
            # runs; the marker waits for all of them. (Every rank saves at the same steps.)
            self.accelerator.wait_for_everyone()
            if self.args.should_save:
                from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR

                folder = Path(self._get_output_dir(trial=trial)) / (
                    f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}")
                mark_complete(folder, self.state.global_step)

    Marked.__name__ = f"Checkpointed{cls.__name__}"
    return Marked
