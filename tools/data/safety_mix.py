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
from ftagent.tools import bundled
from pydantic import BaseModel

# Sources by name, with their licence, as the dataset gate shows them.
SOURCES = {
    "advbench": "AdvBench harmful behaviors (MIT)",
    "xstest": "XSTest v2 (CC BY 4.0)",
    "ftagent": "ftagent's own look-alikes (Apache-2.0)",
}
BENIGN_NEW_TOKENS = 160  # the most a look-alike answer is generated to, before trimming
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


# Harmful requests are 2 in 5 mix rows, look-alikes 3 in 5. Measured on self_instruct with
# `python -m evals.safety`: half and half at share 0.5 (35 + 35 rows) took
# refusal of the probe requests from 0% to 76% but also refused 22% of the benign probe
# look-alikes ("How do I blow up a balloon?"); the look-alikes are what teaches the line.
HARMFUL_FRACTION = 0.4


def counts(n_train: int, share: float) -> tuple[int, int]:
    """(harmful, benign) rows for `share` of `n_train`, split by HARMFUL_FRACTION."""
    total = round(n_train * share) if share > 0 else 0
    harmful = round(total * HARMFUL_FRACTION)
    return harmful, total - harmful


def pick(pool: list[dict], n: int, seed: int, weights: dict[str, int] | None = None
         ) -> list[dict]:
    """n rows of a pool by a salted rank of their prompt: fixed for a seed, spread over the
    pool rather than its first rows. With `weights` (source -> share), sources take turns
    in that proportion (2:1 gives two rows of the first for each of the second) until one
    runs out."""
    ranked = sorted(pool, key=lambda r: _rank(seed, r["prompt"]))
    if not weights:
        return ranked[:n]
    queues = {src: [r for r in ranked if r["source"] == src] for src in weights}
    out: list[dict] = []
    while len(out) < n and any(queues.values()):
        for src, share in weights.items():
            for _ in range(share):
                if queues[src] and len(out) < n:
                    out.append(queues[src].pop(0))
    return out


# Harmful requests: two imperative AdvBench goals ("Write a tutorial on how to ...") for
# each XSTest question ("How do I ...?"). Chat and instruction data is mostly imperative,
# and a model tuned on it follows imperative requests: measured on self_instruct, a mix of
# 7 AdvBench and 11 XSTest refusals (drawn without weights) left the tuned model refusing
# 0 of the 50 AdvBench probe requests.
HARMFUL_WEIGHTS = {"advbench": 2, "xstest": 1}


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


# Look-alike answers are cut, at sentence ends, to about the task's own answer length:
# measured on self_instruct, untrimmed base answers (the base rambles: 65 words a test
# answer against the task's ~20) made the tuned model answer 46 words where the run
# without the mix answered 35, and cost 28% of its ROUGE-L; cut to 1.5x the task's median
# answer, 50 look-alikes made it answer 19 words and cost 14%. The upper quartile keeps the
# task's long answers in view.
LENGTH_FACTOR = 1.5
MIN_WORDS, MAX_WORDS = 12, 120


def answer_budget(task_answers: list[str]) -> int:
    """Words a look-alike answer may keep: 1.5x the task's upper-quartile answer length,
    within 12-120."""
    if not task_answers:
        return MAX_WORDS
    words = sorted(len(a.split()) for a in task_answers)
    return int(min(max(words[(3 * len(words)) // 4] * LENGTH_FACTOR, MIN_WORDS), MAX_WORDS))


def trim_to_words(text: str, limit: int) -> str:
    """Whole sentences from the start of `text` while they fit in `limit` words; the first
    sentence alone may run to twice the limit, else nothing is left (the row is dropped)."""
    sentences = re.split(r"(?<=[.!?])\s+", whole_sentences(text))
    kept: list[str] = []
    for sentence in sentences:
        if kept and len(" ".join([*kept, sentence]).split()) > limit:
            break
        kept.append(sentence)
    out = " ".join(kept).strip()
    return out if len(out.split()) <= 2 * limit else ""


def harmful_pool() -> list[dict]:
    return bundled.read_jsonl(bundled.HARMFUL_MIX)


def benign_pool() -> list[dict]:
    own = [{"prompt": p, "source": "ftagent"}
           for p in bundled.read_yaml_list(bundled.LOOKALIKES, "lookalikes")]
    return [{"prompt": r["prompt"], "source": "xstest"}
            for r in bundled.read_jsonl(bundled.XSTEST_SAFE_MIX)] + own


GenerateFn = Callable[[list[list[dict]], int], list[str]]  # (conversations, max tokens)


def build_mix(n_train: int, share: float, answer: GenerateFn, system: str | None = None,
              seed: int = 42, words: int = MAX_WORDS) -> tuple[list[dict], MixReport]:
    """The mix's rows (chat examples) and what went in. `answer` is the base model's greedy
    generation; `system` is the task's system prompt, put on every row as on the task's;
    `words` bounds a look-alike answer (`answer_budget` of the task's answers)."""
    from ftagent.tools.evaluate.refusal import is_refusal

    n_harmful, n_benign = counts(n_train, share)
    head = [{"role": "system", "content": system}] if system else []
    refusals = bundled.read_yaml_list(bundled.REFUSALS, "refusals")
    harmful = pick(harmful_pool(), n_harmful, seed, HARMFUL_WEIGHTS)
    rows = [{"messages": [*head, {"role": "user", "content": r["prompt"]},
                          {"role": "assistant", "content": refusal_for(r["prompt"], refusals)}]}
            for r in harmful]
    tally = Counter(f"harmful: {SOURCES[r['source']]}" for r in harmful)
    candidates = pick(benign_pool(), math.ceil(n_benign * SPARE), seed) if n_benign else []
    said = answer([[*head, {"role": "user", "content": r["prompt"]}] for r in candidates],
                  min(BENIGN_NEW_TOKENS, max(48, 3 * words)))  # ~1.3 tokens a word, spare
    kept = dropped = 0
    for r, text in zip(candidates, said, strict=True):
        if kept == n_benign:
            break
        text = trim_to_words(text, words)
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

    def answer(conversations: list[list[dict]], max_new_tokens: int) -> list[str]:
        if not conversations:
            return []
        from ftagent.tools.evaluate.compare import load_plain
        from ftagent.tools.evaluate.generation import generate

        model, tokenizer = load_plain(model_path, bf16)
        return generate(model, tokenizer, conversations, max_new_tokens)

    return answer


def write_rows(path: Path, rows: list[dict]) -> str:
    """JSONL, atomically; returns its sha256 (as the split files record)."""
    from ftagent.tools.atomic import write_text

    data = b"".join(orjson.dumps(r) + b"\n" for r in rows)
    write_text(path, data.decode("utf-8"))
    return hashlib.sha256(data).hexdigest()


def mix_into_split(report, out_dir: str | Path, model_path: str | Path, share: float,
                   bf16: bool = False):
    """The whole step on a prepared dataset: build the mix (the base model at `model_path`
    answers the look-alikes; every row carries the task's system prompt) and add it to the
    training split. Returns the updated DataReport; a non-generation task is left as is."""
    from ftagent.tools.data.tokens import conversation
    from ftagent.tools.evaluate.compare import read_rows, task_system_prompt

    if share <= 0 or report.task_type != "generation":
        return report
    train = read_rows(report.split_paths["train"])
    rows, mix = build_mix(
        report.splits["train"], share, base_model_answerer(model_path, bf16),
        system=task_system_prompt(train), seed=report.seed,
        words=answer_budget([conversation(r)[-1]["content"] for r in train]))
    return add_to_split(Path(out_dir), report, rows, mix)


def add_to_split(out_dir: Path, report, rows: list[dict], mix: MixReport):
    """Append the mix to train.jsonl (the task's rows stay in train_task.jsonl, which the
    evaluator reads for its copy checks), rewrite the `datasets` folder and the report.
    Returns the updated DataReport."""
    from ftagent.tools.atomic import write_json, write_text
    from ftagent.tools.data.prepare import save_datasets_folder
    from ftagent.tools.data.report import to_markdown

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
