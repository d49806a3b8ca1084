"""Distillation data: prompts (prompt-only rows, or chat rows whose answers are to be
replaced) -> the teacher's answers -> a chat JSONL the student trains on, a rejected.jsonl
with the reason for every row set aside, and generation.json: who answered, with what
settings, when, how many requests, cache hits and what it cost."""

from __future__ import annotations

import json
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from ftagent.tools.atomic import write_json, write_jsonl
from ftagent.tools.data.readers import read_records
from ftagent.tools.data.schema import RowError, convert, guess_schema
from ftagent.tools.teacher.cache import AnswerCache
from ftagent.tools.teacher.checks import answer_problem, clean_answer, labels_in_prompt
from ftagent.tools.teacher.generate import Progress, cost_of, generate_answers
from ftagent.tools.teacher.settings import TeacherSettings, request_key

GENERATED = "generated.jsonl"
REJECTED = "rejected.jsonl"
REPORT = "generation.json"


class PromptError(ValueError):
    """A row that holds no prompt; names the file, line and field."""


def prompt_of(messages: list[dict]) -> list[dict]:
    """The conversation up to and including its last user turn (a trailing answer is
    what the teacher replaces)."""
    last_user = max((i for i, m in enumerate(messages) if m["role"] == "user"), default=-1)
    return [{"role": m["role"], "content": m["content"]} for m in messages[: last_user + 1]]


def read_prompts(path: str | Path) -> list[tuple[str, list[dict]]]:
    """(where, prompt messages) for every row of a file ftagent reads. A row with no user
    turn is an error naming its file and line."""
    out = []
    for rec in read_records(path):
        where = f"{rec.source}:{rec.row}"
        if rec.data is None:
            raise PromptError(f"{where}: {rec.problem}")
        schema = guess_schema(rec.data)
        if schema is None:
            raise PromptError(f"{where}: no prompt field (expected messages, prompt, "
                              "instruction, question or text)")
        try:
            examples = convert(rec.data, schema)
        except RowError as exc:
            raise PromptError(f"{where}: field {exc.field}: {exc}") from None
        for ex in examples:
            msgs = ex.get("messages") or []
            prompt = prompt_of(msgs)
            if not prompt or not prompt[-1]["content"].strip():
                raise PromptError(f"{where}: field messages: no user message to answer")
            out.append((where, prompt))
    if not out:
        raise PromptError(f"{path}: no rows")
    return out


def estimate(settings: TeacherSettings, prompts: list[list[dict]],
             cache: AnswerCache | None = None) -> dict:
    """What a generation will ask and cost before it starts: prompts not in the cache,
    their tokens (about 4 characters a token, as providers bill it roughly) and the cost
    at most (every answer as long as max_tokens)."""
    todo = [p for p in prompts if not (cache and cache.get(request_key(settings, p)))]
    unique = {json.dumps(p, sort_keys=True) for p in todo}
    chars = sum(len(m["content"]) for p in todo for m in p)
    tokens_in = chars // 4 + 4 * sum(len(p) for p in todo)
    tokens_out = len(unique) * settings.max_tokens
    return {"prompts": len(prompts), "cached": len(prompts) - len(todo),
            "requests": len(unique), "prompt_tokens": tokens_in,
            "answer_tokens_at_most": tokens_out,
            "cost_usd_at_most": round(cost_of(settings, tokens_in, tokens_out), 4),
            "teacher": settings.describe()}


def estimate_file(settings: TeacherSettings, prompts_path: str | Path,
                  cache_path: str | Path | None = None) -> dict:
    """`estimate` for a file's prompts against the shared cache; a file that holds no
    usable prompt gives {"problem": why} instead."""
    from ftagent.tools.teacher.settings import default_cache

    try:
        rows = read_prompts(prompts_path)
    except (PromptError, OSError) as exc:
        return {"problem": f"the teacher cannot answer this data: {exc}"}
    cache = AnswerCache(cache_path or default_cache())
    try:
        return estimate(settings, [p for _, p in rows], cache)
    finally:
        cache.close()


def distill(
    prompts_path: str | Path,
    out_dir: str | Path,
    settings: TeacherSettings,
    cache_path: str | Path,
    labels: list[str] | None = None,
    on_progress: Progress | None = None,
) -> dict:
    """Write `out_dir/generated.jsonl` (chat rows with the teacher's answers),
    `rejected.jsonl` and `generation.json`; returns the report. The input is never modified.
    `labels`: the classes of a classification task (else read from a system prompt that
    lists them); answers that name none are rejected, the rest are trained as the label."""
    out = Path(out_dir)
    rows = read_prompts(prompts_path)
    labels = labels or labels_in_prompt(rows[0][1]) or None
    cache = AnswerCache(cache_path)
    try:
        answers, stats = generate_answers(settings, [p for _, p in rows], cache, on_progress)
    finally:
        cache.close()
    kept, rejected, reasons = [], [], Counter()
    for (where, prompt), a in zip(rows, answers, strict=True):
        meta = {"source": where, "teacher": settings.name, "settings": settings.identity(),
                "created": a.created, "cached": a.cached}
        problem = answer_problem(a, settings.max_tokens, labels)
        if problem:
            reasons[problem.split(":")[0].split(" (")[0]] += 1
            rejected.append({"messages": prompt, "answer": a.text, "reason": problem,
                             "meta": meta})
            continue
        answer = {"role": "assistant", "content": clean_answer(a.text, labels)}
        kept.append({"messages": [*prompt, answer], "meta": meta})
    write_jsonl(out / GENERATED, kept)
    write_jsonl(out / REJECTED, rejected)
    report = {
        "teacher": settings.describe(), "settings": settings.identity(),
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
        "source": str(prompts_path), "rows": len(rows), "kept": len(kept),
        "rejected": len(rejected), "rejected_by_reason": dict(reasons),
        "labels": labels, "label_counts": dict(Counter(
            r["messages"][-1]["content"] for r in kept)) if labels else None,
        "cache_hits": stats.cache_hits, "requests": stats.requests, "failed": stats.failed,
        "errors": stats.errors, "prompt_tokens": stats.prompt_tokens,
        "completion_tokens": stats.completion_tokens, "cost_usd": stats.cost_usd,
        "wall_s": stats.wall_s, "generated": str(out / GENERATED),
        "rejected_file": str(out / REJECTED),
    }
    write_json(out / REPORT, report)
    return report


def summary(report: dict) -> str:
    """One line for a gate or the CLI."""
    why = ", ".join(f"{k} {n}" for k, n in report["rejected_by_reason"].items())
    paid = (f"{report['requests']} requests, {report['cache_hits']} from the cache"
            + (f", ${report['cost_usd']:.4f}" if report["cost_usd"] else ""))
    return (f"The teacher {report['teacher']} answered {report['rows']} prompts: "
            f"{report['kept']} kept, {report['rejected']} set aside"
            + (f" ({why})" if why else "") + f"; {paid}; {report['wall_s']:.0f} s.")
