"""data_prep's tool: load, validate, split and report, writing everything atomically."""

from __future__ import annotations

import hashlib
from collections import Counter
from pathlib import Path

from pydantic import BaseModel

from tools.atomic import write_json, write_jsonl, write_text
from tools.data.load import Example, load_examples
from tools.data.split import seeded_split
from tools.data.validate import ValidationResult, validate_examples

# An answer set this small, with answers this short, reads as a label set.
MAX_LABELS = 50
MAX_LABEL_WORDS = 4
MIN_EXAMPLES = {"classification": 200, "generation": 100}


class DataReport(BaseModel):
    source: str
    sha256: str
    formats: dict[str, int]
    validation: ValidationResult
    task_type: str  # "classification" | "generation"
    labels: list[str] = []
    splits: dict[str, int]
    split_paths: dict[str, str]
    seed: int
    warnings: list[str] = []

    @property
    def passed(self) -> bool:
        return self.validation.kept >= 3


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def detect_task(examples: list[Example]) -> tuple[str, list[str]]:
    answers = Counter(ex.messages[-1]["content"].strip() for ex in examples)
    short = all(len(a.split()) <= MAX_LABEL_WORDS for a in answers)
    repeated = len(answers) <= min(MAX_LABELS, max(2, len(examples) // 2))
    if short and repeated and len(answers) >= 2:
        return "classification", sorted(answers)
    return "generation", []


def summarize(data_path: str | Path) -> tuple[int, str, list[str]]:
    """(usable examples, task type, labels): the quick look the planner needs."""
    kept, _ = validate_examples(load_examples(data_path).examples)
    task_type, labels = detect_task(kept) if kept else ("generation", [])
    return len(kept), task_type, labels


def _markdown(r: DataReport) -> str:
    lines = [
        f"# Dataset report: `{r.source}`",
        "",
        f"- sha256: `{r.sha256}`",
        f"- formats: {', '.join(f'{k} ({v})' for k, v in r.formats.items())}",
        f"- examples: {r.validation.total} read, {r.validation.kept} kept",
        f"- task type: **{r.task_type}**" + (f" ({len(r.labels)} labels)" if r.labels else ""),
        f"- split (seed {r.seed}): " + ", ".join(f"{k} {v}" for k, v in r.splits.items()),
        "",
        "| check | count | examples | action |",
        "|---|---:|---|---|",
    ]
    for c in r.validation.checks:
        lines.append(f"| {c.name} | {c.count} | {'; '.join(c.examples) or '-'} | {c.action} |")
    if r.warnings:
        lines += ["", "## Warnings", *[f"- {w}" for w in r.warnings]]
    return "\n".join(lines) + "\n"


def prepare_dataset(
    data_path: str | Path,
    out_dir: str | Path,
    seed: int = 42,
    val_fraction: float = 0.1,
    test_fraction: float = 0.2,
) -> DataReport:
    """Validate `data_path` and write `train/val/test.jsonl`, `report.json`, `report.md`."""
    out_dir = Path(out_dir)
    loaded = load_examples(data_path)
    kept, validation = validate_examples(loaded.examples)
    task_type, labels = detect_task(kept) if kept else ("generation", [])
    warnings = []
    if validation.dropped:
        warnings.append(f"{validation.dropped} of {validation.total} examples were dropped")
    if len(kept) < MIN_EXAMPLES[task_type]:
        warnings.append(
            f"only {len(kept)} usable examples; {MIN_EXAMPLES[task_type]}+ are advised for "
            f"{task_type} (few-shot prompting may be enough)"
        )
    splits = seeded_split(kept, seed, val_fraction, test_fraction) if len(kept) >= 3 else {}
    paths = {}
    for name, rows in splits.items():
        p = out_dir / f"{name}.jsonl"
        write_jsonl(p, [{"messages": ex.messages} for ex in rows])
        paths[name] = str(p)
    report = DataReport(
        source=str(Path(data_path)),
        sha256=file_sha256(data_path),
        formats=loaded.formats,
        validation=validation,
        task_type=task_type,
        labels=labels,
        splits={k: len(v) for k, v in splits.items()},
        split_paths=paths,
        seed=seed,
        warnings=warnings,
    )
    write_json(out_dir / "report.json", report.model_dump())
    write_text(out_dir / "report.md", _markdown(report))
    return report
