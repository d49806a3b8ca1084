"""The safety mix: rows the data step adds to a chat or generation training split, so that a
fine-tune refuses harmful requests and still answers benign requests that only sound
harmful.

Why: a chat fine-tune on task data alone learns to answer whatever it is asked; the default
base (SmolLM2-135M-Instruct) already refuses none of the AdvBench probe requests, and a
tuned copy refuses none either. Half the mix is harmful requests answered with varied
refusals (tools/bundled/safety/refusals.yaml); the other half is look-alikes ("how do I
kill a tmux session") answered by the base model itself, so the mix teaches when to refuse
without teaching new facts or a refusal reflex.

Sources (tools/bundled/README.md has licences): harmful requests from AdvBench (MIT) and
XSTest's unsafe contrast prompts (CC BY 4.0); look-alikes from XSTest's safe prompts and a
list the project wrote. None is a prompt the safety probes measure with:
tools/bundled/make_probes.py splits each source once, and tests/test_safety_mix.py checks.

Mixed rows go to the training split only: the task's validation and test splits, and so
its metrics, never see them.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections import Counter
from collections.abc import Callable
from pathlib import Path

import orjson
from pydantic import BaseModel

from tools import bundled

# Sources by name, with their licence, as the dataset gate shows them.
SOURCES = {
    "advbench": "AdvBench harmful behaviors (MIT)",
    "xstest": "XSTest v2 (CC BY 4.0)",
    "ftagent": "ftagent's own look-alikes (Apache-2.0)",
}
BENIGN_NEW_TOKENS = 160  # enough for a short helpful answer; cut back to a full sentence
MIN_ANSWER_CHARS = 40  # shorter base answers teach nothing about being helpful
SPARE = 1.5  # look-alikes to generate per one kept: the base refuses or rambles on some


class MixReport(BaseModel):
    share: float  # asked: mix rows as a share of the task's training rows
    rows: int  # added to train.jsonl
    harmful: int  # harmful requests answered with a refusal
    benign: int  # look-alikes answered by the base model
    sources: dict[str, int]  # "harmful: AdvBench ... (MIT)" -> rows
    dropped: int = 0  # base answers left out (a refusal, or too short)
    path: str = ""  # safety_mix.jsonl, the added rows on their own
    note: str = ""  # why fewer rows than asked, when so


def _rank(seed: int, text: str) -> str:
    return hashlib.sha256(f"ftagent-safety-mix:{seed}:{text}".encode()).hexdigest()


def counts(n_train: int, share: float) -> tuple[int, int]:
    """(harmful, benign) rows for `share` of `n_train`, half each (harmful gets the odd one:
    refusals are what the task data never teaches)."""
    total = round(n_train * share) if share > 0 else 0
    return math.ceil(total / 2), total // 2


def pick(pool: list[dict], n: int, seed: int) -> list[dict]:
    """n rows of a pool by a salted rank of their prompt: fixed for a seed, spread over the
    pool's sources rather than its first rows."""
    return sorted(pool, key=lambda r: _rank(seed, r["prompt"]))[:n]


def refusal_for(prompt: str, refusals: list[str]) -> str:
    """One of the bundled refusals, chosen by the prompt: varied, and the same every run."""
    return refusals[int(_rank(0, prompt)[:8], 16) % len(refusals)]


def whole_sentences(text: str) -> str:
    """An answer cut back to its last full sentence (generation stops mid-sentence at the
    token limit; training on that would teach the model to stop mid-sentence)."""
    text = text.strip()
    if re.search(r"[.!?)`\"']\s*$", text):
        return text
    cut = max(text.rfind(". "), text.rfind("! "), text.rfind("? "), text.rfind(".\n"))
    return text[: cut + 1].strip() if cut > 0 else ""


def harmful_pool() -> list[dict]:
    return bundled.read_jsonl(bundled.HARMFUL_MIX)


def benign_pool() -> list[dict]:
    own = [{"prompt": p, "source": "ftagent"}
           for p in bundled.read_yaml_list(bundled.LOOKALIKES, "lookalikes")]
    return [{"prompt": r["prompt"], "source": "xstest"}
            for r in bundled.read_jsonl(bundled.XSTEST_SAFE_MIX)] + own


GenerateFn = Callable[[list[list[dict]]], list[str]]  # conversations -> answers


def build_mix(n_train: int, share: float, answer: GenerateFn, system: str | None = None,
              seed: int = 42) -> tuple[list[dict], MixReport]:
    """The mix's rows (chat examples) and what went in. `answer` is the base model's greedy
    generation; `system` is the task's system prompt, put on every row as on the task's."""
    from tools.eval_probes import is_refusal

    n_harmful, n_benign = counts(n_train, share)
    head = [{"role": "system", "content": system}] if system else []
    refusals = bundled.read_yaml_list(bundled.REFUSALS, "refusals")
    harmful = pick(harmful_pool(), n_harmful, seed)
    rows = [{"messages": [*head, {"role": "user", "content": r["prompt"]},
                          {"role": "assistant", "content": refusal_for(r["prompt"], refusals)}]}
            for r in harmful]
    tally = Counter(f"harmful: {SOURCES[r['source']]}" for r in harmful)
    candidates = pick(benign_pool(), math.ceil(n_benign * SPARE), seed) if n_benign else []
    said = answer([[*head, {"role": "user", "content": r["prompt"]}] for r in candidates])
    kept = dropped = 0
    for r, text in zip(candidates, said, strict=True):
        if kept == n_benign:
            break
        text = whole_sentences(text)
        if len(text) < MIN_ANSWER_CHARS or is_refusal(text):
            dropped += 1
            continue
        rows.append({"messages": [*head, {"role": "user", "content": r["prompt"]},
                                  {"role": "assistant", "content": text}]})
        tally[f"benign: {SOURCES[r['source']]}, answered by the base model"] += 1
        kept += 1
    note = ""
    if kept < n_benign:
        note = (f"{kept} of {n_benign} look-alikes kept: the base model refused or gave too "
                "short an answer to the others")
    return rows, MixReport(share=share, rows=len(rows), harmful=len(harmful), benign=kept,
                           sources=dict(sorted(tally.items())), dropped=dropped, note=note)


def base_model_answerer(model_path: str | Path, bf16: bool = False) -> GenerateFn:
    """Greedy answers from the base model (loaded once, on first use; safetensors only)."""

    def answer(conversations: list[list[dict]]) -> list[str]:
        if not conversations:
            return []
        from tools.evaluate import load_plain
        from tools.generation import generate

        model, tokenizer = load_plain(model_path, bf16)
        return generate(model, tokenizer, conversations, BENIGN_NEW_TOKENS)

    return answer


def write_rows(path: Path, rows: list[dict]) -> str:
    """JSONL, atomically; returns its sha256 (as the split files record)."""
    from tools.atomic import write_text

    data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    write_text(path, data.decode("utf-8"))
    return hashlib.sha256(data).hexdigest()


def add_to_split(out_dir: Path, report, rows: list[dict], mix: MixReport):
    """Append the mix to train.jsonl (the task's rows stay in train_task.jsonl, which the
    evaluator reads for its copy checks), rewrite the `datasets` folder and the report.
    Returns the updated DataReport."""
    from tools.atomic import write_json, write_text
    from tools.data.prepare import save_datasets_folder
    from tools.data.report import to_markdown

    train = Path(report.split_paths["train"])
    task_rows = [orjson.loads(line) for line in train.read_bytes().splitlines() if line]
    mix = mix.model_copy(update={"path": str(out_dir / "safety_mix.jsonl")})
    write_rows(out_dir / "safety_mix.jsonl", rows)
    paths = dict(report.split_paths)
    hashes = dict(report.split_sha256)
    paths["train_task"] = str(out_dir / "train_task.jsonl")
    hashes["train_task"] = write_rows(out_dir / "train_task.jsonl", task_rows)
    hashes["train"] = write_rows(train, task_rows + rows)
    splits = {name: [orjson.loads(x) for x in Path(p).read_bytes().splitlines() if x]
              for name, p in paths.items() if name in report.splits}
    save_datasets_folder(out_dir, splits)
    updated = report.model_copy(update={
        "split_paths": paths, "split_sha256": hashes, "safety_mix": mix.model_dump(),
        "splits": {**report.splits, "train": len(task_rows) + len(rows)},
    })
    write_json(out_dir / "report.json", updated.model_dump())
    write_text(out_dir / "report.md", to_markdown(updated))
    return updated
