"""Task metrics for base-vs-tuned evaluation: strings in, numbers out, no model.

The scores come from maintained libraries (rouge-score, sacrebleu, scikit-learn) so that
they mean what the same names mean elsewhere; this module only decides which metrics a
task gets, how answers are normalised and parsed, and how unparsable answers count.
The libraries are imported inside the functions: importing scikit-learn costs about a
second, and the CLI imports tools.* on start.
"""

from __future__ import annotations

import json
import re
import unicodedata
from collections.abc import Sequence
from statistics import fmean, median
from typing import Any

# An answer that names no label becomes this class: it is never a reference, so it is
# always wrong and costs the true class recall without adding a class to the macro mean.
UNPARSABLE = "\x00unparsable"

_WORD = re.compile(r"[^\W_]+")  # letters and digits of any script, as rouge-score's [a-z0-9]+


def _check(preds: Sequence[str], refs: Sequence[str]) -> None:
    if len(preds) != len(refs):
        raise ValueError(f"{len(preds)} predictions for {len(refs)} references")


def _edge(c: str) -> bool:
    return c.isspace() or unicodedata.category(c)[0] == "P"


def _strip_punct(text: str) -> str:
    """Drop whitespace and Unicode punctuation (category P*) from both ends."""
    start, end = 0, len(text)
    while start < end and _edge(text[start]):
        start += 1
    while end > start and _edge(text[end - 1]):
        end -= 1
    return text[start:end]


def normalize(text: str) -> str:
    """Casefolded, NFKC, whitespace collapsed, surrounding punctuation dropped: "Yes." == "yes"."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return re.sub(r"\s+", " ", _strip_punct(text))


def exact_match(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Share of answers equal to their reference after normalize()."""
    _check(preds, refs)
    if not preds:
        return 0.0
    return sum(normalize(p) == normalize(r) for p, r in zip(preds, refs, strict=True)) / len(preds)


# --- classification -------------------------------------------------------------------


def parse_label(answer: str, labels: Sequence[str]) -> str | None:
    """The label an answer names, or None.

    An answer equal to a label (normalised) is that label. Otherwise the labels that appear
    in it as whole words or phrases are candidates: the longest wins ("billing dispute"
    over "billing"), and among equally long ones the first in the answer. A label written
    with underscores or hyphens also matches with spaces ("not_spam" in "not spam").
    """
    norm = normalize(answer)
    forms: list[tuple[str, str]] = []  # (normalised form, label)
    for lab in labels:
        n = normalize(lab)
        if not n:
            continue
        if norm == n:
            return lab
        forms.append((n, lab))
        spaced = re.sub(r"[_-]+", " ", n)
        if spaced != n:
            forms.append((spaced, lab))
    if not norm:
        return None
    for n, lab in forms:
        if norm == n:
            return lab
    best: tuple[int, int, str] | None = None  # (-length, position, label)
    for n, lab in forms:
        m = re.search(rf"(?<!\w){re.escape(n)}(?!\w)", norm)
        if m and (best is None or (-len(n), m.start()) < best[:2]):
            best = (-len(n), m.start(), lab)
    return best[2] if best else None


def classification_metrics(
    preds: Sequence[str], refs: Sequence[str], labels: Sequence[str]
) -> dict[str, Any]:
    """Accuracy and macro-F1 of the labels parsed from the answers, plus per-class scores.

    An answer naming no label counts as its own class that is never correct. The macro mean
    runs over the labels that are a reference or a prediction (scikit-learn's default set,
    less the unparsable class), so a label absent from this test set does not add a 0.
    A reference outside `labels` is kept as a class of its own and counted, not dropped.
    """
    from sklearn.metrics import accuracy_score, precision_recall_fscore_support

    _check(preds, refs)
    label_set = list(dict.fromkeys(labels))
    y_true = [parse_label(r, label_set) or r for r in refs]
    outside = [r for r in dict.fromkeys(y_true) if r not in label_set]
    label_set += outside
    y_pred = [parse_label(p, label_set) or UNPARSABLE for p in preds]
    n_unparsable = y_pred.count(UNPARSABLE)
    base = {"n": len(preds), "n_unparsable": n_unparsable, "n_ref_outside_labels": len(outside)}
    if not preds:
        return {**base, "accuracy": 0.0, "macro_f1": 0.0, "per_class": {}}
    seen = set(y_true) | set(y_pred)
    scored = [lab for lab in label_set if lab in seen]
    p, r, f, s = precision_recall_fscore_support(
        y_true, y_pred, labels=scored, average=None, zero_division=0
    )
    per_class = {
        lab: {
            "precision": float(p[i]),
            "recall": float(r[i]),
            "f1": float(f[i]),
            "support": int(s[i]),
        }
        for i, lab in enumerate(scored)
    }
    return {
        **base,
        "accuracy": float(accuracy_score(y_true, y_pred)),
        "macro_f1": float(f.mean()),
        "per_class": per_class,
    }


# --- structured (JSON) answers ----------------------------------------------------------

_MISSING = object()


def _loads(text: str) -> Any:
    """The JSON value of an answer, or _MISSING. Strict: a fenced or chatty answer fails,
    as it would for the program that consumes the output."""
    try:
        return json.loads(text.strip())
    except (ValueError, TypeError):
        return _MISSING


def json_type(value: Any) -> str:
    """The JSON-schema type name of a parsed JSON value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _types(values: list[Any]) -> str | list[str]:
    names = {json_type(v) for v in values}
    if "number" in names:
        names.discard("integer")  # 1 and 1.5 under one key: the key holds numbers
    return names.pop() if len(names) == 1 else sorted(names)


def infer_schema(train_answers: Sequence[str]) -> dict[str, Any] | None:
    """The schema the training answers share: for JSON objects, the keys present in every
    one and the JSON types seen under each; None when no training answer is JSON.

    Answers that do not parse are ignored, so one bad row does not erase the schema.
    """
    values = [v for v in map(_loads, train_answers) if v is not _MISSING]
    if not values:
        return None
    objects = [v for v in values if isinstance(v, dict)]
    if len(objects) < len(values):
        return {"type": _types(values)}
    keys = [k for k in objects[0] if all(k in o for o in objects[1:])]
    return {
        "type": "object",
        "required": keys,
        "properties": {k: {"type": _types([o[k] for o in objects])} for k in keys},
    }


def _type_ok(value: Any, expected: str) -> bool:
    actual = json_type(value)
    return actual == expected or (expected == "number" and actual == "integer")


def matches_schema(value: Any, schema: dict[str, Any]) -> bool:
    """A JSON-schema subset: type (one or a list), required, properties, items.

    jsonschema is not installed in this project; this subset is all the inferred schemas
    use, and other keywords are ignored rather than failing.
    """
    expected = schema.get("type")
    if expected is not None:
        allowed = [expected] if isinstance(expected, str) else list(expected)
        if not any(_type_ok(value, t) for t in allowed):
            return False
    if isinstance(value, dict):
        if any(k not in value for k in schema.get("required", [])):
            return False
        for k, sub in schema.get("properties", {}).items():
            if k in value and not matches_schema(value[k], sub):
                return False
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return all(matches_schema(v, schema["items"]) for v in value)
    return True


def json_compliance(
    preds: Sequence[str],
    schema: dict[str, Any] | None = None,
    train_answers: Sequence[str] | None = None,
) -> float:
    """Share of answers that parse as JSON and match the schema.

    The schema is the one given, else the one inferred from the training answers; with
    neither, parsing alone counts.
    """
    if schema is None and train_answers is not None:
        schema = infer_schema(train_answers)
    if not preds:
        return 0.0
    ok = 0
    for p in preds:
        v = _loads(p)
        ok += v is not _MISSING and (schema is None or matches_schema(v, schema))
    return ok / len(preds)


def _same(a: Any, b: Any) -> bool:
    """JSON equality: Python's == would call true equal to 1; 1 and 1.0 stay equal."""
    ta, tb = json_type(a), json_type(b)
    if {ta, tb} <= {"integer", "number"}:
        return a == b
    if ta != tb:
        return False
    if ta == "object":
        return a.keys() == b.keys() and all(_same(a[k], b[k]) for k in a)
    if ta == "array":
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return a == b


def json_match(preds: Sequence[str], refs: Sequence[str]) -> float:
    """Share of answers whose JSON value equals the reference's (key order and spacing do
    not matter, case does); a reference that is not JSON is compared as exact_match does."""
    _check(preds, refs)
    if not preds:
        return 0.0
    hits = 0
    for p, r in zip(preds, refs, strict=True):
        rv = _loads(r)
        if rv is _MISSING:
            hits += normalize(p) == normalize(r)
        else:
            pv = _loads(p)
            hits += pv is not _MISSING and _same(pv, rv)
    return hits / len(preds)


def is_structured(answers: Sequence[str]) -> bool:
    """Whether every answer is a JSON object or array (the task wants structured output)."""
    return bool(answers) and all(isinstance(_loads(a), dict | list) for a in answers)


# --- free text --------------------------------------------------------------------------


class _Tokenizer:
    """rouge-score's tokenisation (lowercase, runs of letters and digits) for every script:
    its default keeps only [a-z0-9], so Cyrillic, Greek or CJK text scores 0."""

    def tokenize(self, text: str) -> list[str]:
        return _WORD.findall(text.casefold())


def _lengths(texts: Sequence[str], prefix: str) -> dict[str, float]:
    import numpy as np

    n = [len(t.split()) for t in texts]
    return {
        f"{prefix}_words_mean": fmean(n),
        f"{prefix}_words_median": float(median(n)),
        f"{prefix}_words_p90": float(np.percentile(n, 90)),
    }


def length_stats(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Words (whitespace-split) per answer and reference, and the mean per-example ratio:
    a tuned model that rambles or truncates shows here before it shows in ROUGE."""
    _check(preds, refs)
    if not preds:
        return {}
    ratios = [len(p.split()) / max(len(r.split()), 1) for p, r in zip(preds, refs, strict=True)]
    return {**_lengths(preds, "pred"), **_lengths(refs, "ref"), "length_ratio_mean": fmean(ratios)}


def text_metrics(preds: Sequence[str], refs: Sequence[str]) -> dict[str, float]:
    """Mean ROUGE-L F (0-1), corpus BLEU and chrF (sacrebleu, 0-100), and length stats.

    BLEU is sacrebleu's standard corpus BLEU (13a tokens, no effective order), so answers
    shorter than four words score 0 even when identical; chrF works on characters and has
    no such floor, which makes it the fairer score for short answers and any language.
    """
    import sacrebleu
    from rouge_score import rouge_scorer

    _check(preds, refs)
    if not preds:
        return {"rouge_l": 0.0, "bleu": 0.0, "chrf": 0.0}
    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=False, tokenizer=_Tokenizer())
    rouge = fmean(scorer.score(r, p)["rougeL"].fmeasure for p, r in zip(preds, refs, strict=True))
    return {
        "rouge_l": rouge,
        "bleu": float(sacrebleu.corpus_bleu(list(preds), [list(refs)]).score),
        "chrf": float(sacrebleu.corpus_chrf(list(preds), [list(refs)]).score),
        **length_stats(preds, refs),
    }


# --- per task ---------------------------------------------------------------------------

# chrF agrees with people on code better than BLEU or ROUGE (Evtikhiev et al., JSS 2023).
TEXT_PRIMARY = {"code": "chrf"}


def metrics_for(
    task_type: str,
    preds: Sequence[str],
    refs: Sequence[str],
    labels: Sequence[str] | None = None,
    train_answers: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The metrics a task type is judged by, with `primary_metric` naming the one to compare.

    classification: accuracy, macro_f1 (primary: a model that collapses onto the majority
    label keeps its accuracy but loses macro-F1), exact_match. Any task whose references are
    all JSON (extraction, as a rule): json_valid, json_compliance against the schema of the
    training answers (of the references when none are given), json_match (primary: valid
    JSON with wrong values should not win), exact_match. Everything else: rouge_l (primary;
    chrf for code), bleu, chrf, exact_match. Length stats always.
    """
    _check(preds, refs)
    out: dict[str, Any] = {"task_type": task_type, "n": len(preds)}
    if task_type == "classification":
        if labels is None:
            labels = list(dict.fromkeys(r.strip() for r in refs if r.strip()))
        out |= classification_metrics(preds, refs, labels)
        out["primary_metric"] = "macro_f1"
    elif is_structured(refs):
        out["json_valid"] = json_compliance(preds)
        out["json_compliance"] = json_compliance(preds, train_answers=train_answers or refs)
        out["json_match"] = json_match(preds, refs)
        out["primary_metric"] = "json_match"
    else:
        out |= text_metrics(preds, refs)
        out["primary_metric"] = TEXT_PRIMARY.get(task_type, "rouge_l")
    out["exact_match"] = exact_match(preds, refs)
    out |= length_stats(preds, refs)
    return out
