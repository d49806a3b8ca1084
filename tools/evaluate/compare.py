"""Held-out evaluation of base vs tuned: completion loss, perplexity, task metrics on
greedy generations, a refusal probe, and samples for a person to read.

The tuned model is the base with its adapter; the base's numbers come from the same
weights with the adapter disabled, so only one copy of the model is in memory.
"""

from __future__ import annotations

import contextlib
import json
import math
from pathlib import Path
from typing import NamedTuple

from ftagent.tools.atomic import write_json, write_text
from ftagent.tools.data.tokens import conversation
from ftagent.tools.evaluate.judge import JudgeResult
from ftagent.tools.evaluate.likelihood import completion_loss
from ftagent.tools.evaluate.preference import (
    PairLogprobs,
    as_chat_rows,
    pair_logprobs,
    preference_accuracy,
    reward_stats,
)
from pydantic import BaseModel


class ModelScores(BaseModel):
    # None: not measured (a model evaluated through a chat endpoint gives no log-probs)
    loss: float | None = None
    perplexity: float | None = None
    exact_match: float
    accuracy: float | None = None  # classification only: label parsed from the answer
    macro_f1: float | None = None  # classification
    rouge_l: float | None = None  # free text (0-1)
    chrf: float | None = None  # free text (0-100)
    bleu: float | None = None  # free text (0-100)
    json_compliance: float | None = None  # structured answers that parse and fit the schema
    json_valid: float | None = None  # structured: answers that parse as JSON
    json_match: float | None = None  # structured: fields equal to the reference's
    unparsable_share: float | None = None  # classification answers naming no label
    answer_words: float | None = None  # mean words per answer
    refusal_rate: float | None = None  # harmful requests refused (higher is safer)
    # harmful requests answered with neither a refusal nor (classifier) a bare label
    harmful_compliance: float | None = None
    # classifier: harmful requests answered with one label-like word outside its label set
    harmful_off_list: float | None = None
    over_refusal_rate: float | None = None  # benign look-alikes refused (lower is better)
    arc_accuracy: float | None = None  # general knowledge: forgetting check
    preference_accuracy: float | None = None  # preference pairs: chosen more likely
    reward_accuracy: float | None = None  # tuned only: DPO implicit reward > 0 vs base
    reward_margin: float | None = None  # tuned only: mean implicit reward margin (nats)


class Sample(BaseModel):
    prompt: str
    reference: str
    base: str
    tuned: str


class EvalReport(BaseModel):
    task_type: str
    n_test: int
    primary_metric: str
    base: ModelScores
    tuned: ModelScores
    samples: list[Sample]
    n_probe: int = 0
    n_safe: int = 0
    n_arc: int = 0
    probe_samples: list[dict] = []  # harmful and look-alike answers, for the detector's audit
    probe_error: str | None = None  # why the safety probes did not run: the check fails
    judge: JudgeResult | None = None  # pairwise LLM judge, when an endpoint is configured
    max_new_tokens: int = 0  # the answer budget both models had (the deployer reuses it)

    def primary(self, which: str) -> float:
        return getattr(getattr(self, which), self.primary_metric)


PRIMARY = {"classification": "accuracy", "preference": "preference_accuracy"}

# Tokens a classifier may add after its longest label ("Intent: ...", a full stop) and still
# be parsed as that label.
LABEL_SLACK_TOKENS = 4


def answer_tokens(task_type: str, labels=(), count=None) -> int:
    """New tokens an answer may take: 128 for text; for a classifier enough for its longest
    label. A fixed 16 cut BANKING77's 'balance_not_updated_after_cheque_or_cash_deposit' (17
    tokens in SmolLM2's vocabulary) short, so its rows could never be right. `count` gives a
    label's token count; without a tokenizer (a provider's model) a token is taken as two
    characters, more than BPE vocabularies need for such names."""
    if task_type != "classification":
        return 128
    count = count or (lambda text: -(-len(text) // 2))
    return max(16, max(map(count, labels or []), default=0) + LABEL_SLACK_TOKENS)


def primary_metric(task_type: str, scores: ModelScores) -> str:
    """The metric a task is judged by: what the plan targets (tools.plan.decide), read from
    what the test set allowed: JSON references get field match, code chrF, other free text
    ROUGE-L (exact match of free text is almost always 0 for base and tuned alike)."""
    if task_type in PRIMARY:
        return PRIMARY[task_type]
    if scores.json_match is not None:
        return "json_match"
    if scores.chrf is not None and task_type == "code":
        return "chrf"
    return "rouge_l" if scores.rouge_l is not None else "exact_match"


def read_rows(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text("utf-8").splitlines() if line.strip()]


class Probes(BaseModel):
    """What the model is probed with besides the test split (empty: nothing)."""

    harmful: list[str] = []
    safe: list[dict] = []
    arc: list[dict] = []
    system: str | None = None  # the task's system prompt, sent with every safety probe
    labels: list[str] = []  # a classifier's labels: a bare label is a safe answer
    error: str | None = None  # the probes could not be loaded: the safety check fails


def task_system_prompt(rows: list[dict]) -> str | None:
    """The system prompt most test rows carry (a classifier's label list, a persona), or
    None: probes are sent the way the tuned model will be used."""
    from collections import Counter

    seen = Counter(m[0]["content"] for m in (conversation(r) for r in rows)
                   if m and m[0]["role"] == "system")
    return seen.most_common(1)[0][0] if seen else None


N_ARC = 50  # ARC questions per model: the forgetting check's share of evaluation time


def bundled_probes(test_file: str | Path, task_type: str, labels: list[str] | None = None,
                   n_arc: int = N_ARC) -> Probes:
    """The bundled probes for a task, sent with the task's own system prompt. A classifier
    gets the harmful requests only (over-refusal of look-alikes means nothing for a label
    set). Missing probe files give Probes(error=...), which the safety check fails on."""
    from ftagent.tools.bundled import BundledFileMissing
    from ftagent.tools.evaluate.probes import load_probes

    try:
        found = load_probes()
    except BundledFileMissing as exc:
        return Probes(error=str(exc))
    label_task = task_type == "classification"
    return Probes(
        harmful=[r["prompt"] for r in found["harmful"]],
        safe=[] if label_task else found["safe"],
        arc=_spread(found["arc"], n_arc),
        system=task_system_prompt(read_rows(test_file)) if task_type != "preference" else None,
        labels=list(labels or []) if label_task else [],
    )


def scores_from(m: dict, n_rows: int, task_type: str, rates, probes: Probes,
                **measured) -> ModelScores:
    """A model's scores from its task metrics (`metrics_for`) and safety probe rates, for
    the local tester and the provider's chat endpoint alike; `measured` adds what only
    one of them can measure (loss, perplexity, ARC accuracy)."""
    unparsable = m.get("n_unparsable")
    return ModelScores(
        exact_match=m["exact_match"],
        accuracy=m.get("accuracy") if task_type == "classification" else None,
        macro_f1=m.get("macro_f1"),
        rouge_l=m.get("rouge_l"), chrf=m.get("chrf"), bleu=m.get("bleu"),
        json_compliance=m.get("json_compliance"),
        json_valid=m.get("json_valid"), json_match=m.get("json_match"),
        unparsable_share=unparsable / n_rows if unparsable is not None and n_rows else None,
        answer_words=m.get("pred_words_mean"),
        refusal_rate=rates.refusal_rate if rates else None,
        harmful_compliance=rates.harmful_compliance if rates else None,
        harmful_off_list=len(rates.off_list) / rates.n_harmful
        if rates and probes.labels and rates.n_harmful else None,
        over_refusal_rate=rates.over_refusal_rate if rates else None,
        **measured,
    )


def score(model, tokenizer, rows, task_type, labels, probes: Probes, max_new_tokens,
          train_answers=None) -> tuple[ModelScores, list[str], list[dict]]:
    from ftagent.tools.evaluate.generation import generate
    from ftagent.tools.evaluate.metrics import metrics_for
    from ftagent.tools.evaluate.multiple_choice import multiple_choice_accuracy
    from ftagent.tools.evaluate.refusal import refusal_rates

    loss = completion_loss(model, tokenizer, rows)
    answers = generate(model, tokenizer, [r["messages"][:-1] for r in rows], max_new_tokens)
    refs = [r["messages"][-1]["content"] for r in rows]
    m = metrics_for(task_type, answers, refs, labels or None, train_answers)
    rates, error = None, probes.error
    if (probes.harmful or probes.safe) and not error:
        try:
            rates = refusal_rates(model, tokenizer, generate, probes.harmful, probes.safe,
                                  system=probes.system, labels=probes.labels)
        except Exception as exc:  # noqa: BLE001 - a failed probe fails the gate, not the run
            error = f"the safety probe failed: {type(exc).__name__}: {exc}"
    scores = scores_from(
        m, len(rows), task_type, rates, probes, loss=loss,
        perplexity=math.exp(min(loss, 50)),
        arc_accuracy=multiple_choice_accuracy(model, tokenizer, probes.arc) if probes.arc
        else None,
    )
    said = [a.model_dump() for a in rates.samples] if rates else []
    if error:
        said = [{"error": error}]
    return scores, answers, said


PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


class UnsafeWeightsError(ValueError):
    """A model or adapter folder without safetensors weights: ftagent loads no pickles."""


def require_safetensors(path: str | Path) -> None:
    """A local model folder must hold *.safetensors weights; pickled ones (pytorch_model.bin
    and the like) can run code when loaded, so they are refused with a clear error rather
    than loaded. A name that is not a local folder is left to `use_safetensors=True`."""
    folder = Path(path)
    if not folder.is_dir() or any(folder.glob("*.safetensors")):
        return
    pickles = sorted(p.name for p in folder.iterdir() if p.name.endswith(PICKLE_SUFFIXES))
    if pickles:
        raise UnsafeWeightsError(
            f"{folder} holds only {', '.join(pickles[:3])}: ftagent loads safetensors weights "
            "only (pickled weights can run code when loaded). Convert them once, from a "
            "trusted source: python -c \"from transformers import AutoModelForCausalLM as M; "
            f"M.from_pretrained('{folder}').save_pretrained('{folder}')\"")
    raise UnsafeWeightsError(f"{folder} has no *.safetensors weights")


def require_safetensors_adapter(path: str | Path) -> None:
    """PEFT falls back to adapter_model.bin (a pickle) and to the Hub when a folder has no
    adapter_model.safetensors, and has no switch to refuse that: so ftagent checks first."""
    folder = Path(path)
    if (folder / "adapter_model.safetensors").is_file():
        return
    bins = sorted(p.name for p in folder.iterdir()
                  if p.name.endswith(PICKLE_SUFFIXES)) if folder.is_dir() else []
    raise UnsafeWeightsError(
        f"{folder} holds no adapter_model.safetensors"
        + (f" (only {', '.join(bins[:3])}: ftagent loads no pickled weights, which can run "
           "code when loaded; re-save the adapter with save_pretrained from a trusted source)"
           if bins else ""))


def inference_device() -> str:
    """Where evaluation and serving run: the GPU when there is one (the GPU check found
    both on the CPU of a GPU machine before), else the CPU."""
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"


def load_plain(path: str | Path, bf16: bool = False):
    """A full model folder (safetensors only) and its tokenizer, for evaluation."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    require_safetensors(path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(
        path, dtype=torch.bfloat16 if bf16 else torch.float32, use_safetensors=True
    ).to(inference_device()).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


def load_tuned(base_path: str | Path, adapter_path: str | Path, bf16: bool = False):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM, AutoTokenizer

    require_safetensors(base_path)
    require_safetensors_adapter(adapter_path)
    tokenizer = AutoTokenizer.from_pretrained(adapter_path)
    base = AutoModelForCausalLM.from_pretrained(
        base_path, dtype=torch.bfloat16 if bf16 else torch.float32, use_safetensors=True
    )
    # PEFT itself would fall back to adapter_model.bin: require_safetensors_adapter refuses
    # that above; use_safetensors states the intent (PEFT uses it only when offloading).
    model = PeftModel.from_pretrained(base, adapter_path, use_safetensors=True)
    model.to(inference_device()).eval()
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token
    return model, tokenizer


class _Scored(NamedTuple):
    """One model's results: its scores, its answers to the test prompts, what it said to
    the probes, and its preference-pair log-likelihoods (None without pairs)."""

    scores: ModelScores
    answers: list[str]
    said: list[dict]
    logprobs: PairLogprobs | None


def evaluate(
    base_path: str | Path,
    adapter_path: str | Path,
    test_file: str | Path,
    out_dir: str | Path,
    task_type: str = "generation",
    labels: list[str] | None = None,
    probes: Probes | None = None,
    n_samples: int = 5,
    bf16: bool = False,
    train_file: str | Path | None = None,
    judge_endpoint=None,
) -> EvalReport:
    """Score base and tuned on the test split; write report.json, report.md, metrics.png.

    `bf16` evaluates in bfloat16 (as trained, where the hardware has it): about 2x
    faster on CPUs with AVX512-BF16, at the cost of loss values a little less exact.
    `probes`: what to probe besides the test split (`bundled_probes` for the shipped ones);
    None probes nothing, and the safety check then fails as not run."""
    import torch

    torch.manual_seed(0)
    rows = read_rows(test_file)
    probes = probes or Probes()
    train_answers = ([conversation(r)[-1]["content"] for r in read_rows(train_file)]
                     if train_file else None)
    pairs = rows if task_type == "preference" else []
    if pairs:
        rows = as_chat_rows(pairs)
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(base_path)
    max_new = answer_tokens(task_type, labels, lambda text: len(
        tokenizer(text, add_special_tokens=False)["input_ids"]))
    args = (rows, task_type, labels or [], probes, max_new, train_answers)
    base, tuned = _score_base_and_tuned(base_path, adapter_path, bf16, args, pairs)
    if pairs:
        tuned.scores.reward_accuracy, tuned.scores.reward_margin = reward_stats(
            base.logprobs, tuned.logprobs)
    verdicts = None
    if judge_endpoint is not None:
        from ftagent.tools.evaluate.judge import judge_pairs

        verdicts = judge_pairs(judge_endpoint, [r["messages"][:-1] for r in rows],
                               base.answers, tuned.answers,
                               [r["messages"][-1]["content"] for r in rows])
    report = _report(task_type, rows, probes, base, tuned, n_samples, verdicts)
    report.max_new_tokens = max_new
    write_report(report, Path(out_dir))
    return report


def _score_model(model, tokenizer, args: tuple, pairs: list[dict]) -> _Scored:
    """Everything measured on one model, so base and tuned are measured identically."""
    scores, answers, said = score(model, tokenizer, *args)
    lp = pair_logprobs(model, tokenizer, pairs) if pairs else None
    if lp is not None:
        scores.preference_accuracy = preference_accuracy(lp)
    return _Scored(scores, answers, said, lp)


def _score_base_and_tuned(base_path: str | Path, adapter_path: str | Path, bf16: bool,
                          args: tuple, pairs: list[dict]) -> tuple[_Scored, _Scored]:
    """An adapter is scored with one copy of the weights (the base is the same model with
    the adapter disabled); two full models are loaded one after the other, so only one is
    in memory at a time."""
    if (Path(adapter_path) / "adapter_config.json").exists():
        model, tokenizer = load_tuned(base_path, adapter_path, bf16)
        with model.disable_adapter():
            base = _score_model(model, tokenizer, args, pairs)
        tuned = _score_model(model, tokenizer, args, pairs)
    else:  # two full models (a merged export, another fine-tune): one in memory at a time
        model, tokenizer = load_plain(base_path, bf16)
        base = _score_model(model, tokenizer, args, pairs)
        del model
        model, tokenizer = load_plain(adapter_path, bf16)
        tuned = _score_model(model, tokenizer, args, pairs)
    return base, tuned


def _report(task_type: str, rows: list[dict], probes: Probes, base: _Scored, tuned: _Scored,
            n_samples: int, verdicts: JudgeResult | None) -> EvalReport:
    """The report a person reads: both models' scores, a few answers side by side, and
    every probe answer tagged with the model that gave it (the detector's audit)."""
    said = [{"model": "base", **a} for a in base.said] + [
        {"model": "tuned", **a} for a in tuned.said]
    samples = [
        Sample(
            prompt=r["messages"][-2]["content"],
            reference=r["messages"][-1]["content"],
            base=b,
            tuned=t,
        )
        for r, b, t in list(zip(rows, base.answers, tuned.answers, strict=True))[:n_samples]
    ]
    return EvalReport(
        task_type=task_type,
        n_test=len(rows),
        primary_metric=primary_metric(task_type, base.scores),
        base=base.scores,
        tuned=tuned.scores,
        samples=samples,
        n_probe=len(probes.harmful),
        n_safe=len(probes.safe),
        n_arc=len(probes.arc),
        probe_samples=said,
        probe_error=next((a["error"] for a in said if "error" in a), None),
        judge=verdicts,
    )


def _spread(rows: list, n: int) -> list:
    """n rows spread evenly over the file (every type of XSTest prompt, say), fixed."""
    if n <= 0 or n >= len(rows):
        return rows
    step = len(rows) / n
    return [rows[int(i * step)] for i in range(n)]


def _fmt(v) -> str:
    return "-" if v is None else f"{v:.4f}" if isinstance(v, float) else str(v)


def report_markdown(r: EvalReport, verdict_md: str = "") -> str:
    lines = [f"# Evaluation: base vs tuned ({r.task_type}, {r.n_test} held-out examples)", ""]
    if verdict_md:  # every metric against the plan's targets and the baseline
        lines += [verdict_md, ""]
    else:
        lines += ["| metric | base | tuned |", "|---|---:|---:|"]
        for name in ModelScores.model_fields:
            b, t = getattr(r.base, name), getattr(r.tuned, name)
            if b is not None or t is not None:
                lines.append(f"| {name} | {_fmt(b)} | {_fmt(t)} |")
    if r.task_type == "preference":
        lines += ["", "Preference pairs: `loss` is the NLL per token of the chosen answers; "
                  "`preference_accuracy` is the share of pairs whose chosen answer the model "
                  "finds more likely; `reward_*` are DPO's implicit rewards with the base as "
                  "the reference (nats)."]
    if r.judge is not None:
        lines += ["", r.judge.summary]
    lines += [
        "",
        f"Refusal probe: {r.n_probe} harmful requests (AdvBench goals); over-refusal probe: "
        f"{r.n_safe} benign look-alikes (XSTest safe prompts); forgetting check: {r.n_arc} "
        "ARC-Easy questions scored by option log-likelihood." if r.n_probe or r.n_arc else "",
        "",
        "## Samples",
        "",
        "| prompt | reference | base | tuned |",
        "|---|---|---|---|",
    ]
    cell = lambda s: s.replace("|", "\\|").replace("\n", " ")[:160]  # noqa: E731
    lines += [
        f"| {cell(s.prompt)} | {cell(s.reference)} | {cell(s.base)} | {cell(s.tuned)} |"
        for s in r.samples
    ]
    return "\n".join(lines) + "\n"


def plot_metrics(r: EvalReport, out: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = [
        n for n in ("accuracy", "macro_f1", "exact_match", "rouge_l", "json_compliance",
                    "arc_accuracy", "refusal_rate", "over_refusal_rate", "preference_accuracy",
                    "reward_accuracy")
        if getattr(r.tuned, n) is not None
    ]
    fig, ax = plt.subplots(figsize=(6, 3.5), dpi=100)
    x = range(len(names))
    for offset, which in ((-0.2, "base"), (0.2, "tuned")):
        values = [getattr(getattr(r, which), n) or 0.0 for n in names]
        bars = ax.bar([i + offset for i in x], values, 0.4, label=which)
        ax.bar_label(bars, fmt="%.2f", padding=2)  # a zero is a value too: print it
    ax.set_xticks(list(x), names)
    ax.tick_params(axis="x", labelrotation=30)
    ax.set_ylim(0, 1.1)
    ax.legend()
    ax.set_title("held-out metrics: base vs tuned")
    fig.tight_layout()
    fig.savefig(out)
    plt.close(fig)
    return out


def write_report(r: EvalReport, out_dir: Path, verdict_md: str = "") -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    write_json(out_dir / "report.json", r.model_dump())
    write_text(out_dir / "report.md", report_markdown(r, verdict_md))
    with contextlib.suppress(Exception):  # a plot is a convenience, never a failure
        plot_metrics(r, out_dir / "metrics.png")
