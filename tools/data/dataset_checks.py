"""Dataset-level checks and the report they end in: label balance, enough examples,
loss-masking previews, the input's hash. Preparation and streaming validation reach the
same numbers by different routes and share this last step, so their reports agree."""

from __future__ import annotations

import hashlib
from collections import Counter

from ftagent.tools.data.readers import expand_paths
from ftagent.tools.data.report import DataReport, Tally
from ftagent.tools.data.rows import PrepareOptions

# Short, repeated answers read as a label set (e.g. intents in chat form).
MAX_LABELS, MAX_LABEL_WORDS = 50, 4
MIN_EXAMPLES = {"classification": 200, "generation": 100, "preference": 100}
IMBALANCE = 10.0


def files_sha256(spec) -> str:
    h = hashlib.sha256()
    for path in expand_paths(spec):
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        for f in files:
            with open(f, "rb") as fh:
                for chunk in iter(lambda: fh.read(1 << 20), b""):
                    h.update(chunk)
    return h.hexdigest()


def previews_checked(tokenizer, examples: list[dict], opts: PrepareOptions, tally: Tally):
    """Loss previews of the first examples; masking mistakes they show are findings."""
    from ftagent.tools.data.tokens import loss_preview, mask_problem

    previews = [loss_preview(tokenizer, ex, opts.max_length) for ex in examples]
    for n, p in enumerate(previews, start=1):
        problem = mask_problem(p)
        if problem:
            tally.add("loss_mask", f"preview example {n}: {problem}")
    return previews


def finish_report(
    spec,
    info: dict,
    tally: Tally,
    kept: int,
    task_type: str,
    labels: list[str],
    label_counts: Counter,
    dropped: int,
    opts: PrepareOptions,
    counted_tokens: bool,
    extra: dict,
) -> DataReport:
    """Dataset-level checks (balance, size) and the report, shared by every path."""
    schema = info["schema"]
    warnings = []
    if label_counts and len(label_counts) > 1 and schema.kind != "multiple_choice":
        most, least = label_counts.most_common()[0], label_counts.most_common()[-1]
        if most[1] > IMBALANCE * least[1]:
            tally.add("label_imbalance", f"{most[0]} {most[1]} vs {least[0]} {least[1]}")
    need = MIN_EXAMPLES.get(task_type, 100)
    if kept < need:
        tally.add("too_little_data", f"{kept} usable examples, {need}+ advised for {task_type}")
        warnings.append(
            f"only {kept} usable examples; {need}+ are advised for {task_type} "
            "(few-shot prompting may be enough)"
        )
    if dropped:
        warnings.append(f"{dropped} rows were dropped; see rejected.jsonl")
    return DataReport(
        source=", ".join(str(p) for p in expand_paths(spec)),
        sha256=info.get("sha256") or files_sha256(spec),
        schema_name=schema.name,
        schema_detail=schema.describe(),
        kind=schema.kind,
        column_mapping=schema.columns,
        schema_votes=info["votes"],
        rows_read=info["rows"],
        examples_converted=info["converted"],
        kept=kept,
        checks=tally.results(),
        task_type=task_type,
        labels=labels,
        label_counts=dict(label_counts),
        max_length=opts.max_length if counted_tokens else None,
        seed=opts.seed,
        warnings=warnings,
        **extra,
    )
