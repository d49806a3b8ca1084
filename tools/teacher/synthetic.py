"""Synthetic data and augmentation: the teacher writes new examples (input and answer)
from a task description and a few seed examples. Each request shows a different sample of
the seeds and asks for one new example as JSON; what comes back is parsed, checked like
user data, and deduplicated against the seeds and the other new rows with the near-
duplicate index (tools/data/neardup.py). Augmentation is the same, per label that falls
short, with the answer fixed to that label."""

from __future__ import annotations

import json
import random
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from ftagent.tools.atomic import write_json, write_jsonl
from ftagent.tools.data.checks import pii_kinds
from ftagent.tools.data.neardup import near_duplicate_groups
from ftagent.tools.evaluate.metrics import normalize, parse_label
from ftagent.tools.teacher.cache import AnswerCache
from ftagent.tools.teacher.generate import GenerationStats, Progress, generate_answers
from ftagent.tools.teacher.settings import TeacherSettings

SEEDS_SHOWN = 5  # seed examples in each request
ROUNDS = 3  # requests again for what was rejected, at most this many times
NEAR_DUP = 0.8  # Jaccard of word 3-grams above which a new input repeats another


def seed_pairs(rows: list[dict]) -> list[dict]:
    """{"system", "input", "output"} of chat rows (last user turn, final answer)."""
    out = []
    for r in rows:
        msgs = r["messages"]
        user = [m["content"] for m in msgs if m["role"] == "user"]
        if not user or msgs[-1]["role"] != "assistant":
            continue
        system = next((m["content"] for m in msgs if m["role"] == "system"), None)
        out.append({"system": system, "input": user[-1], "output": msgs[-1]["content"]})
    return out


def request(task: str, seeds: list[dict], k: int, label: str | None) -> list[dict]:
    """Request number k: a seeded sample of the seeds, so every request differs."""
    shown = random.Random(k).sample(seeds, min(SEEDS_SHOWN, len(seeds)))
    lines = "\n".join(json.dumps({"input": s["input"], "output": s["output"]},
                                 ensure_ascii=False) for s in shown)
    fixed = f' whose output is exactly "{label}"' if label else ""
    return [
        {"role": "system", "content": "You write new training examples for a dataset. "
         f"The task: {task}"},
        {"role": "user", "content": f"Examples, one JSON object a line:\n{lines}\n\n"
         f"Write example number {k + 1}: one new example{fixed}, different from all of these "
         "in wording and situation. Reply with a single JSON object with the keys \"input\" "
         "and \"output\", and nothing else."},
    ]


def parse_example(text: str) -> dict | str:
    """{"input", "output"} from an answer, or why it is unusable."""
    start = text.find("{")
    if start < 0:
        return "no JSON object in the answer"
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
    except json.JSONDecodeError as exc:
        return f"invalid JSON ({exc.msg})"
    if not isinstance(obj, dict):
        return "the JSON is not an object"
    ex = {k: obj.get(k) for k in ("input", "output")}
    for k, v in ex.items():
        if not isinstance(v, str | int | float) or not str(v).strip():
            return f"field {k} missing or empty"
    return {k: str(v).strip() for k, v in ex.items()}


def synthesize(
    task: str,
    seeds: list[dict],
    n: int,
    settings: TeacherSettings,
    cache_path: str | Path,
    label: str | None = None,
    labels: list[str] | None = None,
    start: int = 0,
    on_progress: Progress | None = None,
) -> tuple[list[dict], list[dict], GenerationStats]:
    """Up to `n` new chat rows (the seeds' system prompt kept), the rejected ones with
    their reasons, and the generation's stats. `label`: every answer must be this label
    (augmentation); `labels`: the answer must name one of them (classification);
    `start`: first request number (different calls ask different requests)."""
    if not seeds:
        raise ValueError("synthetic data needs at least one seed example")
    system = seeds[0]["system"]
    seen = [s["input"] for s in seeds]
    kept: list[dict] = []
    rejected: list[dict] = []
    total = GenerationStats()
    k = start
    cache = AnswerCache(cache_path)
    try:
        for _ in range(ROUNDS):
            want = n - len(kept)
            if want <= 0:
                break
            ks = list(range(k, k + want + max(1, want // 4)))  # a few spare
            k = ks[-1] + 1
            reqs = [request(task, seeds, i, label) for i in ks]
            answers, stats = generate_answers(settings, reqs, cache, on_progress)
            _add(total, stats)
            fresh = []
            for i, a in zip(ks, answers, strict=True):
                meta = {"teacher": settings.name, "settings": settings.identity(),
                        "created": a.created, "request": i, "cached": a.cached}
                why, ex = _check(a, settings.max_tokens, label, labels)
                if why:
                    rejected.append({"answer": a.text, "reason": why, "meta": meta})
                else:
                    fresh.append((ex, meta))
            # Near-duplicates of the seeds, of rows kept earlier or of each other go.
            for (ex, meta), ok in zip(fresh, novel([ex["input"] for ex, _ in fresh], seen),
                                      strict=True):
                if not ok:
                    rejected.append({"answer": json.dumps(ex), "reason":
                                     "near-duplicate of a seed or another new example",
                                     "meta": meta})
                    continue
                if len(kept) >= n:
                    break
                msgs = ([{"role": "system", "content": system}] if system else []) + [
                    {"role": "user", "content": ex["input"]},
                    {"role": "assistant", "content": ex["output"]}]
                kept.append({"messages": msgs, "meta": meta})
            seen = [s["input"] for s in seeds] + [r["messages"][-2]["content"] for r in kept]
    finally:
        cache.close()
    return kept, rejected, total


def novel(new: list[str], seen: list[str]) -> list[bool]:
    """For each new input: True when it is neither the same text (normalised) nor a near-
    duplicate (word 3-gram Jaccard >= NEAR_DUP) of a seen one or of an earlier new one."""
    roots = near_duplicate_groups(seen + new, threshold=NEAR_DUP)
    exact = {normalize(t) for t in seen}
    out = []
    for j, text in enumerate(new):
        pos = len(seen) + j
        ok = roots[pos] == pos and normalize(text) not in exact
        exact.add(normalize(text))
        out.append(ok)
    return out


def _check(a, max_tokens: int, label: str | None, labels: list[str] | None):
    if a.finish_reason.startswith("error"):
        return f"teacher error ({a.finish_reason[7:]})", None
    if a.finish_reason == "length":
        return f"truncated: the answer reached max_tokens ({max_tokens})", None
    ex = parse_example(a.text)
    if isinstance(ex, str):
        return ex, None
    if label or labels:
        named = parse_label(ex["output"], [label] if label else labels)
        if named is None:
            wanted = f"the label {label!r}" if label else "a label"
            return f"the output is not {wanted}: {ex['output'][:60]!r}", None
        ex["output"] = named
    kinds = pii_kinds(ex["input"] + "\n" + ex["output"])
    if kinds:
        return f"personal data ({', '.join(kinds)})", None
    return None, ex


def _add(total: GenerationStats, s: GenerationStats) -> None:
    for f in ("prompts", "cache_hits", "requests", "failed", "prompt_tokens",
              "completion_tokens", "cost_usd", "wall_s"):
        setattr(total, f, round(getattr(total, f) + getattr(s, f), 6))
    total.errors += s.errors[: 3 - len(total.errors)]


def shortfalls(rows: list[dict], target: int | None = None) -> dict[str, int]:
    """Examples each label lacks to reach `target` (default: the largest label's count)."""
    counts = Counter(r["messages"][-1]["content"] for r in rows)
    if not counts:
        return {}
    goal = target or max(counts.values())
    return {lab: goal - c for lab, c in sorted(counts.items()) if c < goal}


def augment(
    rows: list[dict],
    task: str,
    settings: TeacherSettings,
    out_dir: str | Path,
    cache_path: str | Path,
    target: int | None = None,
    on_progress: Progress | None = None,
) -> dict:
    """More examples for the labels that fall short of `target` (default: as many as the
    largest label), written with the original rows to `out_dir/augmented.jsonl`;
    `rejected.jsonl` and `augment.json` (counts per label before and after) beside it."""
    out = Path(out_dir)
    need = shortfalls(rows, target)
    added: list[dict] = []
    rejected: list[dict] = []
    total = GenerationStats()
    for i, (label, n) in enumerate(need.items()):
        seeds = seed_pairs([r for r in rows if r["messages"][-1]["content"] == label])
        new, bad, stats = synthesize(task, seeds, n, settings, cache_path, label=label,
                                     start=i * 10_000, on_progress=on_progress)
        added += new
        rejected += bad
        _add(total, stats)
    before = Counter(r["messages"][-1]["content"] for r in rows)
    after = before + Counter(r["messages"][-1]["content"] for r in added)
    write_jsonl(out / "augmented.jsonl", [{"messages": r["messages"]} for r in rows] + added)
    write_jsonl(out / "rejected.jsonl", rejected)
    report = {"teacher": settings.describe(), "settings": settings.identity(),
              "finished": datetime.now(UTC).isoformat(timespec="seconds"),
              "added": len(added), "rejected": len(rejected),
              "rejected_by_reason": dict(Counter(r["reason"].split(":")[0] for r in rejected)),
              "before": dict(before), "after": dict(after), "asked_for": need,
              "cache_hits": total.cache_hits, "requests": total.requests,
              "cost_usd": total.cost_usd, "wall_s": total.wall_s,
              "file": str(out / "augmented.jsonl")}
    write_json(out / "augment.json", report)
    return report
