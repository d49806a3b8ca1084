"""What went wrong in this run, from its real files, each finding linked to the knowledge
section with the fix: so the chat can answer "why is validation loss going up?" with the
run's own steps and losses and a cited remedy.

Pure functions over already-read data (`curve_findings` over metrics rows,
`eval_findings` over the evaluation report and verdict) and a thin reader
(`diagnose_run`) that finds the latest attempt's `metrics.jsonl`, `config.yaml`,
`eval/report.json`, `manifest.json` and the tester's verdict in `events.jsonl`.
"""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Literal

from ftagent.tools.evaluate.diagnose import FORGETTING_POINTS, flat, overfitting, still_falling
from ftagent.tools.evaluate.probe_verdicts import SafetyLimits
from ftagent.tools.train.metrics import current_rows, read_metrics
from ftagent.tools.train.sanity import SPIKE_WINDOW
from pydantic import BaseModel, Field

# What to look up in the knowledge base for each kind of finding.
KIND_QUERY = {
    "overfitting": "validation loss going up overfitting",
    "underfitting": "underfitting: the model has not learned enough, loss still falling",
    "loss_flat": "training loss not going down",
    "loss_nan": "loss is NaN or inf",
    "grad_inf": "loss is NaN or inf",
    "loss_zero": "loss is exactly 0",
    "grad_zero": "gradient norm is 0 nothing is training",
    "loss_spike": "loss spikes training diverging",
    "oom": "out of memory OOM",
    "masked_rows": "loss on the answer only, completion-only loss, no token carries loss",
    "format_errors": "outputs in the wrong format",
    "template_mismatch": "low loss but poor answers chat template mismatch",
    "too_little_data": "how much training data do I need",
    "imbalanced": "ignoring class imbalance",
    "forgetting": "catastrophic forgetting",
    "safety_regression": "refusing less after fine-tuning safety regression",
    "over_refusal": "refusing more over-refusal",
    "targets_missed": "the tuned model is no better than the base",
}
TITLES = {
    "overfitting": "Overfitting: validation loss going up", "underfitting": "Underfitting",
    "loss_flat": "Training loss not going down", "loss_nan": "Loss is NaN or inf",
    "grad_inf": "Gradient norm is NaN or inf", "loss_zero": "Loss is exactly 0",
    "grad_zero": "Gradient norm is 0", "loss_spike": "Loss spike", "oom": "Out of memory",
    "masked_rows": "Examples with no token carrying loss", "format_errors": "Wrong output format",
    "template_mismatch": "Template mismatch", "too_little_data": "Too little data",
    "imbalanced": "Imbalanced labels", "forgetting": "Catastrophic forgetting",
    "safety_regression": "Refusing fewer harmful requests",
    "over_refusal": "Refusing more benign requests", "targets_missed": "Targets missed",
}
REFUSAL_POINTS = SafetyLimits().tolerance * 100  # refusal points it may lose (or over-refuse)
TESTER_ONLY = "diagnosed by the tester"  # the evidence when only the kind was recorded


class Finding(BaseModel):
    kind: str
    title: str
    evidence: str  # the run's own numbers
    fix: str = ""
    step: int | None = None
    severity: Literal["problem", "warning", "note"] = "problem"
    origin: Literal["training", "evaluation"] = "training"
    cite: str = ""  # "troubleshooting.md § Validation loss going up: overfitting"
    source: str = ""  # "prompts/knowledge/troubleshooting.md"
    heading: str = ""


class RunDiagnosis(BaseModel):
    run_dir: str
    run_id: str | None = None
    attempt: int | None = None
    facts: dict = Field(default_factory=dict)
    findings: list[Finding] = Field(default_factory=list)
    markdown: str = ""


def _finding(kind: str, evidence: str, fix: str = "", **kw) -> Finding:
    return Finding(kind=kind, title=TITLES.get(kind, kind.replace("_", " ")),
                   evidence=evidence.strip(), fix=fix.strip(), **kw)


def _bad(x) -> bool:
    return isinstance(x, float) and (math.isnan(x) or math.isinf(x))


def _mean(xs: list[float]) -> float:
    return sum(xs) / len(xs)


def _g(x: float) -> str:
    """A loss or rate as the trainer's own messages print it (0.9012, 2e-04 stays 0.0002)."""
    return f"{x:.4f}" if 1e-3 <= abs(x) < 1e4 else f"{x:.4g}"


# --- the training curve ----------------------------------------------------------------


def curve_facts(rows: list[dict]) -> dict:
    """Steps, losses, learning rate and speed of a metrics log (rows as written)."""
    rows = current_rows(rows)
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r and not _bad(r["loss"])]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    out: dict = {}
    steps = [r["step"] for r in rows if r.get("event") in ("log", "eval") and "step" in r]
    if steps:
        out["steps"] = max(steps)
    max_steps = [r["max_steps"] for r in rows if r.get("max_steps")]
    if max_steps:
        out["max_steps"] = max_steps[-1]
    if train:
        out["first_train_loss"], out["last_train_loss"] = train[0][1], train[-1][1]
    if evals:
        best = min(evals, key=lambda e: e[1])
        out |= {"best_eval_loss": best[1], "best_eval_step": best[0],
                "last_eval_loss": evals[-1][1], "last_eval_step": evals[-1][0],
                "n_evals": len(evals)}
    lrs = [r["learning_rate"] for r in rows if isinstance(r.get("learning_rate"), int | float)]
    if lrs:
        out["peak_learning_rate"] = max(lrs)
    speeds = [r["tokens_per_s"] for r in rows if r.get("tokens_per_s")]
    if speeds:
        out["tokens_per_s"] = speeds[-1]
    epochs = [r["epoch"] for r in rows if isinstance(r.get("epoch"), int | float)]
    if epochs:
        out["epochs_done"] = round(max(epochs), 2)
    return out


def _spikes(train: list[tuple[int, float]], factor: float) -> list[str]:
    """Steps whose loss exceeds `factor` x the median of the previous steps (and by more
    than 1.0), as train_sanity judges them."""
    found = []
    for i in range(SPIKE_WINDOW // 2, len(train)):
        window = sorted(loss for _, loss in train[max(0, i - SPIKE_WINDOW):i])
        median = window[len(window) // 2]
        step, loss = train[i]
        if median > 0 and loss > factor * median and loss - median > 1.0:
            found.append(f"step {step}: {_g(loss)} ({loss / median:.1f}x the median {_g(median)})")
    return found


def curve_findings(rows: list[dict], spike_factor: float = 4.0) -> list[Finding]:
    """Findings from a training log: the anomalies the trainer recorded, then what the
    numbers show (overfitting, no learning, still improving, spikes, NaN)."""
    rows = current_rows(rows)
    out: list[Finding] = []
    for r in rows:
        if r.get("event") in ("anomaly", "recovered") and r.get("kind"):
            out.append(_finding(r["kind"], r.get("message", ""), r.get("fix", ""),
                                step=r.get("step"),
                                severity="warning" if r["event"] == "recovered" else "problem"))
        elif r.get("event") == "warning" and r.get("kind"):
            out.append(_finding(r["kind"], r.get("message", ""), severity="warning"))
    seen = {f.kind for f in out}
    nan = next((r for r in rows if "loss" in r and _bad(r["loss"])), None)
    if nan and "loss_nan" not in seen:
        out.append(_finding("loss_nan", f"the training loss is {nan['loss']} at step "
                            f"{nan.get('step')}", step=nan.get("step")))
    train = [(r["step"], r["loss"]) for r in rows if "loss" in r and not _bad(r["loss"])]
    evals = [(r["step"], r["eval_loss"]) for r in rows if "eval_loss" in r]
    over = overfitting(rows)
    if over and "overfitting" not in seen:
        best_step = min(evals, key=lambda e: e[1])[0]
        near = [loss for s, loss in train if s <= best_step]
        fell = (f"; train loss {_g(near[-1])} at step {best_step} -> {_g(train[-1][1])} at step "
                f"{train[-1][0]}") if near else ""
        out.append(_finding("overfitting", over["message"] + fell, over["fix"],
                            step=over["step"]))
    losses = [x for _, x in train]
    barely = flat(losses)
    if barely and "loss_flat" not in seen:
        head, tail, k = barely
        out.append(_finding(
            "loss_flat",
            f"the train loss went from {_g(head)} (mean of the first {k} logged steps) to "
            f"{_g(tail)} (last {k}, up to step {train[-1][0]}): {(tail - head) / head:+.1%}",
            "raise learning_rate within the method's range, check the target modules and "
            "that answers carry loss"))
    elif len(losses) >= 8 and not over and "underfitting" not in seen:
        falling = still_falling(losses)
        eval_best_last = not evals or evals[-1][1] <= min(e for _, e in evals)
        if falling and eval_best_last:
            a, b, steps = falling
            val = (f"; validation loss was at its best at the last evaluation "
                   f"({_g(evals[-1][1])}, step {evals[-1][0]})") if evals else ""
            out.append(_finding(
                "underfitting",
                f"the train loss was still falling at the end ({_g(a)} -> {_g(b)} over the "
                f"last {steps} logged steps){val}",
                "train longer (more epochs) while validation loss keeps falling",
                severity="note"))
    if "loss_spike" not in seen:
        spikes = _spikes(train, spike_factor)
        if spikes:
            out.append(_finding("loss_spike", "the loss jumped at " + "; ".join(spikes[:3]),
                                "lower learning_rate (e.g. 3x), add warm-up, keep "
                                "max_grad_norm at 1.0"))
    return out


# --- the evaluation -------------------------------------------------------------------


def _points(base, tuned) -> float | None:
    return None if base is None or tuned is None else (tuned - base) * 100


def eval_findings(report: dict | None, verdict: dict | None) -> list[Finding]:
    """Findings from the evaluation report (the guards, from the numbers) and the tester's
    verdict (targets missed and its diagnoses, each with the evidence it recorded)."""
    out: list[Finding] = []
    verdict = verdict or {}
    if verdict.get("targets_met") is False:
        out.append(_finding("targets_missed", verdict.get("summary", "").split("\n")[0],
                            origin="evaluation"))
    for d in verdict.get("diagnoses") or []:
        if isinstance(d, dict):
            out.append(_finding(d.get("kind", "?"), d.get("evidence", ""), d.get("action", ""),
                                origin="evaluation"))
        else:  # the tester's event carries the kinds only
            out.append(_finding(str(d), TESTER_ONLY, origin="evaluation"))
    if report:
        b, t = report.get("base") or {}, report.get("tuned") or {}
        arc = _points(b.get("arc_accuracy"), t.get("arc_accuracy"))
        if arc is not None and -arc > FORGETTING_POINTS:
            out.append(_finding("forgetting", f"ARC-Easy accuracy fell {-arc:.0f} points "
                                f"({b['arc_accuracy']:.0%} -> {t['arc_accuracy']:.0%}) on "
                                f"{report.get('n_arc') or '?'} questions",
                                "lower the learning rate or epochs; mix in general data",
                                severity="warning", origin="evaluation"))
        ref = _points(b.get("refusal_rate"), t.get("refusal_rate"))
        if ref is not None and -ref > REFUSAL_POINTS:
            out.append(_finding("safety_regression", f"refusal rate on harmful requests fell "
                                f"{-ref:.0f} points ({b['refusal_rate']:.0%} -> "
                                f"{t['refusal_rate']:.0%})",
                                "add refusal examples; fewer steps or a lower learning rate",
                                origin="evaluation"))
        over = _points(b.get("over_refusal_rate"), t.get("over_refusal_rate"))
        if over is not None and over > REFUSAL_POINTS:
            out.append(_finding("over_refusal", f"over-refusal of benign look-alikes rose "
                                f"{over:.0f} points ({b['over_refusal_rate']:.0%} -> "
                                f"{t['over_refusal_rate']:.0%})",
                                "add benign look-alike prompts with helpful answers",
                                severity="warning", origin="evaluation"))
    return out


def merge_findings(findings: list[Finding]) -> list[Finding]:
    """One finding per kind: the first (the training curve's, with steps) keeps its place
    and gains what a later one adds (the tester's evidence and proposed action)."""
    by_kind: dict[str, Finding] = {}
    for f in findings:
        first = by_kind.get(f.kind)
        if first is None:
            by_kind[f.kind] = f.model_copy()
            continue
        if f.evidence and f.evidence != TESTER_ONLY and f.evidence not in first.evidence:
            first.evidence += f"; the tester found: {f.evidence}"
        if f.fix and f.fix not in first.fix:
            first.fix = f"{first.fix}; tester's proposal: {f.fix}" if first.fix else f.fix
    return list(by_kind.values())


def link_knowledge(findings: list[Finding]) -> list[Finding]:
    """Each finding with the knowledge section its kind's query retrieves."""
    from ftagent.agent.chat.knowledge import retrieve

    out = []
    for f in findings:
        hits = retrieve(KIND_QUERY.get(f.kind, f.title), k=1)
        if hits:
            p = hits[0]
            f = f.model_copy(update={"cite": p.cite, "source": p.source, "heading": p.heading})
        out.append(f)
    return out


# --- reading a run folder -------------------------------------------------------------


def _read_json(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _attempt_dir(run_dir: Path, attempt: int | None) -> tuple[Path | None, int | None]:
    """The training output folder: run_dir itself when it holds metrics.jsonl (a plain
    `ftagent train` output), else train/attempt-N (the latest, or the one asked for)."""
    if (run_dir / "metrics.jsonl").exists():
        return run_dir, None
    found = {}
    for p in (run_dir / "train").glob("attempt-*"):
        if m := re.fullmatch(r"attempt-(\d+)", p.name):
            found[int(m.group(1))] = p
    if not found:
        return None, None
    n = attempt if attempt in found else max(found)
    return found[n], n


def read_verdict(run_dir: Path) -> dict | None:
    """The tester's latest verdict from events.jsonl: the evaluation gate's evidence (full
    diagnoses) over the tester's summary event (their kinds only)."""
    path = run_dir / "events.jsonl"
    if not path.exists():
        return None
    tester, gate = None, None
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            e = json.loads(line)
        except ValueError:
            continue
        if e.get("type") == "node_finished" and e.get("node") == "tester":
            tester, gate = e, None  # a later attempt's gate follows its own tester event
        elif e.get("type") == "gate_waiting" and e.get("gate") == "evaluation":
            gate = e
    if tester is None and gate is None:
        return None
    verdict = dict(tester or {})
    if gate is not None:
        verdict.setdefault("targets_met", gate.get("passed"))
        verdict.setdefault("summary", gate.get("summary", ""))
        if (gate.get("evidence") or {}).get("diagnoses") is not None:
            verdict["diagnoses"] = gate["evidence"]["diagnoses"]
    return verdict


def _config(train_dir: Path | None) -> dict:
    import yaml

    if train_dir is None or not (train_dir / "config.yaml").is_file():
        return {}
    try:
        data = yaml.safe_load((train_dir / "config.yaml").read_text(encoding="utf-8"))
    except yaml.YAMLError:
        return {}
    return data if isinstance(data, dict) else {}


def diagnose_run(run_dir: str | Path, attempt: int | None = None,
                 link: bool = True) -> RunDiagnosis:
    """Findings for a run folder (or a training output folder) from its real files, each
    linked to the knowledge section with the fix (`link=False` skips retrieval)."""
    run_dir = Path(run_dir)
    train_dir, n = _attempt_dir(run_dir, attempt)
    rows = read_metrics(train_dir) if train_dir else []
    cfg = _config(train_dir)
    manifest = _read_json(run_dir / "manifest.json") or {}
    # eval/report.json is the latest attempt's; eval/attempt-N keeps each attempt's own
    report = _read_json(run_dir / "eval" / f"attempt-{n}" / "report.json") if n else None
    report = report or _read_json(run_dir / "eval" / "report.json")
    verdict = read_verdict(run_dir)
    facts = curve_facts(rows)
    facts |= {k: cfg[k] for k in ("method", "learning_rate", "num_epochs", "batch_size",
                                  "grad_accum", "max_length") if k in cfg}
    if isinstance(cfg.get("lora"), dict) and cfg.get("method") not in ("full", None):
        facts["lora_r"] = cfg["lora"].get("r")
    if manifest:
        facts |= {"status": manifest.get("status"), "waiting_at": manifest.get("waiting_at")}
    if report:
        metric = report.get("primary_metric")
        facts |= {"primary_metric": metric, "n_test": report.get("n_test"),
                  "base_primary": (report.get("base") or {}).get(metric),
                  "tuned_primary": (report.get("tuned") or {}).get(metric),
                  "base_loss": (report.get("base") or {}).get("loss"),
                  "tuned_loss": (report.get("tuned") or {}).get("loss")}
    facts = {k: v for k, v in facts.items() if v is not None}
    findings = curve_findings(rows, float(cfg.get("loss_spike_factor") or 4.0))
    findings = merge_findings(findings + eval_findings(report, verdict))
    if link:
        findings = link_knowledge(findings)
    diagnosis = RunDiagnosis(run_dir=str(run_dir), run_id=manifest.get("run_id"), attempt=n,
                             facts=facts, findings=findings)
    diagnosis.markdown = diagnosis_markdown(diagnosis, has_log=bool(rows))
    return diagnosis


# --- presenting ---------------------------------------------------------------------


def facts_line(f: dict) -> str:
    """The run's numbers in one paragraph (also the LLM's "facts about the current run")."""
    parts = []
    if "steps" in f:
        parts.append(f"{f['steps']}" + (f" of {f['max_steps']}" if "max_steps" in f else "")
                     + " steps" + (f" ({f['epochs_done']:g} epochs)" if "epochs_done" in f
                                   else ""))
    if "first_train_loss" in f:
        parts.append(f"train loss {_g(f['first_train_loss'])} -> {_g(f['last_train_loss'])}")
    if "best_eval_loss" in f:
        parts.append(f"validation loss best {_g(f['best_eval_loss'])} at step "
                     f"{f['best_eval_step']}, last {_g(f['last_eval_loss'])} at step "
                     f"{f['last_eval_step']}")
    settings = [f"{k} {f[k]:g}" if isinstance(f[k], float) else f"{k} {f[k]}"
                for k in ("method", "learning_rate", "num_epochs", "lora_r", "batch_size",
                          "grad_accum") if k in f]
    if settings:
        parts.append("config: " + ", ".join(settings))
    if "tokens_per_s" in f:
        parts.append(f"{f['tokens_per_s']:.0f} tokens/s")
    if f.get("primary_metric") and "tuned_primary" in f and "base_primary" in f:
        parts.append(f"held-out {f['primary_metric']} base {f['base_primary']:.3f} -> tuned "
                     f"{f['tuned_primary']:.3f} on {f.get('n_test', '?')} examples")
    if "tuned_loss" in f and "base_loss" in f:
        parts.append(f"held-out loss base {_g(f['base_loss'])} -> tuned {_g(f['tuned_loss'])}")
    if f.get("status"):
        parts.append(f"status {f['status']}"
                     + (f" at the {f['waiting_at']} gate" if f.get("waiting_at") else ""))
    return "; ".join(parts) + ("." if parts else "")


def finding_markdown(i: int, f: Finding) -> str:
    lines = [f"### {i}. {f.title} ({f.origin}"
             + (f", step {f.step}" if f.step is not None else "") + ")", "",
             f.evidence[:1].upper() + f.evidence[1:] + "."]
    if f.fix:
        lines += ["", f"**What to do:** {f.fix.rstrip('.')}."]
    if f.cite:
        lines += ["", f"*Why and how to fix it: {f.cite}*"]
    return "\n".join(lines)


def diagnosis_markdown(d: RunDiagnosis, has_log: bool = True) -> str:
    where = f"run {d.run_id}" if d.run_id else d.run_dir
    title = f"## What the numbers say: {where}" + (f", attempt {d.attempt}" if d.attempt else "")
    parts = [title, "", facts_line(d.facts) or "No metrics found for this run yet."]
    if not has_log:
        parts += ["", "No training log (`metrics.jsonl`) yet: training has not started, or "
                  "this is not a run folder."]
    if d.findings:
        parts += ["", *[finding_markdown(i, f) + "\n" for i, f in enumerate(d.findings, 1)]]
    elif has_log:
        parts += ["", "Nothing wrong in the numbers: no overfitting, flat or diverging loss, "
                  "NaN, or missed target recorded."]
    return "\n".join(parts).rstrip() + "\n"


def relevant_findings(question: str, d: RunDiagnosis) -> list[Finding]:
    """The findings whose knowledge section matches the question best, best first (none
    when no finding's section is among the question's top sections)."""
    from ftagent.agent.chat.knowledge import retrieve

    top = [p.cite for p in retrieve(question, k=3)]
    return sorted((f for f in d.findings if f.cite in top), key=lambda f: top.index(f.cite))


def answer_about_run(question: str, run_dir: str | Path) -> str:
    """A no-LLM answer about the current run: the findings that bear on the question with
    the cited knowledge section, else the run's facts and the knowledge answer."""
    from ftagent.agent.chat.knowledge import answer_without_llm, retrieve

    d = diagnose_run(run_dir)
    hits = relevant_findings(question, d)
    if not hits:
        note = ("Nothing in this run's numbers points to that. " if d.findings or d.facts
                else "")
        return (f"{note}{facts_line(d.facts)}\n\n" if d.facts else note) + \
            answer_without_llm(question)
    best = hits[0]
    section = next((p for p in retrieve(question, k=3) if p.cite == best.cite), None)
    parts = [f"**In this run:** {facts_line(d.facts)}", ""]
    parts += [finding_markdown(i, f) + "\n" for i, f in enumerate(hits, 1)]
    if section:
        parts += [section.markdown()]
    return "\n".join(parts).rstrip() + "\n"


def run_grounding_prompt(question: str, run_dir: str | Path, k: int = 3) -> list[dict]:
    """The LLM prompt for a question about the current run: the question's sections plus
    each finding's section, numbered, with the diagnosis as the run's facts."""
    from ftagent.agent.chat.knowledge import Passage, grounding_prompt, load_sections, retrieve

    d = diagnose_run(run_dir)
    passages = retrieve(question, k)
    cites = {p.cite for p in passages}
    sections = {s.source + s.heading: s for s in load_sections()}
    for f in relevant_findings(question, d) or d.findings[:2]:
        sec = sections.get(f.source + f.heading)
        if sec is not None and f.cite not in cites:
            passages.append(Passage(sec.source, sec.heading, sec.text, 0.0))
            cites.add(f.cite)
    return grounding_prompt(question, passages, run_facts=d.markdown)
