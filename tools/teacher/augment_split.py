"""Augmentation applied to a prepared split: the teacher's new examples for the labels
that fall short join train.jsonl (and the `datasets` folder), the report's counts follow;
val and test are never touched, so the evaluation stays comparable."""

from __future__ import annotations

from pathlib import Path

import orjson
from ftagent.tools.atomic import write_json, write_text
from ftagent.tools.teacher.settings import TeacherSettings
from ftagent.tools.teacher.synthetic import augment


def augment_split(out_dir: Path, report, goal: str, settings: TeacherSettings,
                  cache_path: Path, target: int | None = None):
    """(updated DataReport, augmentation report). `target`: examples per label wanted
    (default: as many as the largest label has)."""
    from ftagent.tools.data.prepare import save_datasets_folder
    from ftagent.tools.data.report import to_markdown
    from ftagent.tools.data.safety_mix import write_rows

    out_dir = Path(out_dir)
    train = Path(report.split_paths["train"])
    rows = [orjson.loads(x) for x in train.read_bytes().splitlines() if x]
    made = augment(rows, goal, settings, out_dir / "augment", cache_path, target)
    added = [orjson.loads(x) for x in (out_dir / "augment" / "augmented.jsonl").read_bytes()
             .splitlines() if x][len(rows):]
    added = [{"messages": r["messages"]} for r in added]
    hashes = dict(report.split_sha256)
    hashes["train"] = write_rows(train, rows + added)
    splits = {name: [orjson.loads(x) for x in Path(p).read_bytes().splitlines() if x]
              for name, p in report.split_paths.items() if name in report.splits}
    save_datasets_folder(out_dir, splits)
    updated = report.model_copy(update={
        "split_sha256": hashes, "splits": {**report.splits, "train": len(rows) + len(added)},
        "warnings": [*report.warnings, f"{len(added)} training examples written by the teacher "
                     f"({settings.name}) for the labels that fell short; see augment/."],
    })
    write_json(out_dir / "report.json", updated.model_dump())
    write_text(out_dir / "report.md", to_markdown(updated))
    return updated, made
