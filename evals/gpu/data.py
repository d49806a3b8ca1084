"""The check's training data, from files in the repository (nothing is fetched): the
bench's synthetic chat rows for SFT and the tests' Anthropic HH slice, prepared by
ftagent's own data step, for DPO."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
CHAT = ROOT / "evals" / "bench" / "data" / "bench_chat.jsonl"  # 512 rows, skewed lengths
HH_PAIRS = ROOT / "tests" / "assets" / "hh_rlhf_harmless_base" / "train.jsonl"  # 80 pairs


def sft_file(work: Path, rows: int) -> Path:
    """The first `rows` chat rows (rows enough for every step: no row is seen twice, so a
    falling loss is learning, not memorising)."""
    out = work / "data" / f"chat_{rows}.jsonl"
    if not out.exists():
        lines = CHAT.read_text(encoding="utf-8").splitlines()
        if rows > len(lines):
            raise ValueError(f"{rows} rows asked, {CHAT.name} has {len(lines)}")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text("\n".join(lines[:rows]) + "\n", encoding="utf-8")
    return out


def dpo_file(work: Path, model: Path) -> Path:
    """prompt/chosen/rejected rows, as `ftagent data` writes them for this tokenizer."""
    out = work / "data" / "dpo"
    train = out / "train.jsonl"
    if not train.exists():
        from ftagent.tools.data import PrepareOptions, prepare_dataset

        report = prepare_dataset(HH_PAIRS, out, PrepareOptions(
            model=str(model), near_dup_threshold=None))
        train = Path(report.split_paths["train"])
    return train
