"""The trainable datasets of ../shared/data that `python -m evals.workflows` runs, each with
its goal and its subset rule: the one place to change what is run.

Subsets (the default; `--full` runs every row) keep one run's training to about 10 minutes
on 2 CPU cores with the bundled SmolLM2-135M. Yardstick: the demo (200 training rows of ~115
tokens, 3 epochs) trains in about 6 minutes, where the planner's own estimate
(`ftagent plan ... --json`, estimates.train_hours) says 4.3; each N below keeps that
estimate at or under ~7.5 minutes. A subset is written as a new JSONL file in the eval's
output folder; the shared files are only read. Rules, in file order:

- banking77: the first 2 rows per intent, all 77 intents (154 rows). Every example carries
  the 77-label system prompt (~560 tokens: a row is ~590 tokens, 5x a demo row). One row
  per intent would fit the budget but leaves no intent in both train and test; two is the
  least where the held-out accuracy means anything, and it is still far too little data
  for 77 classes: the run is expected to miss the accuracy floor and say so.
  Measured once on a shared 2-core machine (load average ~5, run under nice 10): 24 steps
  at ~90 s a step (55 tokens/s), ~35 min of training, past the default 30-min timeout;
  on a busy machine pass --timeout 3600.
- self_instruct: all 175 rows (estimate 2.8 min).
- sgd: the first 100 dialogues (~360 tokens each). 200 took 16 s a step, 60 steps (~16 min
  of training alone; loss is on the last system turn only, 7 of 315 tokens in the first
  dialogue, so the cost follows the context, not what is learned: issue 20).
- hh_rlhf_harmless_base: the first 100 pairs (estimate 1.9 min). DPO scores chosen and
  rejected with the policy and the reference, which the estimate may undercount; not yet
  measured. Row 50 (like row 311) has an empty chosen answer, which the data checks drop
  as an error; the dataset gate fails on any error, so this subset, like the whole file,
  is expected to stop there under --approve all (read from the code and
  `ftagent data validate`; not yet run).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

SHARED = Path(__file__).resolve().parents[2].parent / "shared" / "data"

Rows = list[dict]


def first(n: int) -> Callable[[Rows], Rows]:
    return lambda rows: rows[:n]


def first_per(key: str, n: int) -> Callable[[Rows], Rows]:
    """The first n rows of every value of `key`, in file order (stratified; no label lost)."""

    def take(rows: Rows) -> Rows:
        seen: dict[str, int] = {}
        out = []
        for row in rows:
            label = row.get(key)
            if seen.get(label, 0) < n:
                seen[label] = seen.get(label, 0) + 1
                out.append(row)
        return out

    return take


@dataclass(frozen=True)
class Dataset:
    name: str
    file: str  # under shared/data
    goal: str
    rule: str = "all rows"  # the subset rule, as the table states it
    take: Callable[[Rows], Rows] | None = None  # None: the subset is the whole file


DATASETS = (
    Dataset("banking77", "banking77/train.jsonl",
            "route banking customer messages to one of 77 intents",
            "first 2 rows per intent, all 77 intents", first_per("category", 2)),
    Dataset("self_instruct", "self_instruct/seed_tasks.jsonl",
            "an assistant that follows everyday instructions"),
    Dataset("sgd", "sgd/train.jsonl", "a booking assistant for multi-turn conversations",
            "first 100 dialogues", first(100)),
    Dataset("hh_rlhf_harmless_base", "hh_rlhf_harmless_base/train.jsonl",
            "make the assistant more harmless: prefer the safer answer",
            "first 100 pairs", first(100)),
)


def read_jsonl(path: Path) -> Rows:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()
            if line.strip()]


def materialise(ds: Dataset, subset: bool, out_dir: Path) -> tuple[Path, int, str]:
    """The file to train on, its row count and the rule used; a subset is written to
    out_dir/<name>.jsonl, the shared file is read only."""
    src = SHARED / ds.file
    rows = read_jsonl(src)
    if not subset or ds.take is None:
        return src, len(rows), "all rows"
    kept = ds.take(rows)
    out_dir.mkdir(parents=True, exist_ok=True)
    dest = out_dir / f"{ds.name}.jsonl"
    dest.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in kept),
                    encoding="utf-8")
    return dest, len(kept), ds.rule
