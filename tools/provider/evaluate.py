"""Base vs tuned through the provider's chat endpoint: the same held-out rows, metrics,
safety probes and report as the local tester (`tools.evaluate`), with answers asked of
`/v1/chat/completions` (greedy, temperature 0) instead of computed in-process.

What a chat endpoint cannot give is left out and said so: the held-out loss and
perplexity (no log-probabilities of given text), the ARC-Easy forgetting check (scored by
option log-likelihood) and, for preference pairs, preference accuracy and DPO's implicit
rewards (log-likelihoods of both answers): the pairs are scored as free text, the answers
against the preferred ones."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ftagent.tools.provider.settings import ProviderSettings

NOT_MEASURED = ("held-out loss and perplexity, and the ARC-Easy forgetting check, are not "
                "measured through a chat endpoint (they need log-probabilities of given "
                "text)")
PAIRS_AS_TEXT = ("preference pairs are scored by ROUGE-L of the answers against the "
                 "preferred answers; preference accuracy and DPO's implicit rewards need "
                 "log-likelihoods a chat endpoint does not give")


def chat_answers(settings: ProviderSettings, model: str, conversations: list[list[dict]],
                 max_tokens: int) -> list[str]:
    """Greedy answers, in order, `settings.concurrency` requests at a time."""
    from ftagent.tools.provider.jobs import _said

    client = settings.client()

    def ask(messages: list[dict]) -> str:
        try:
            out = client.chat.completions.create(model=model, messages=messages,
                                                 max_tokens=max_tokens, temperature=0)
        except Exception as exc:  # noqa: BLE001
            raise _said(exc, settings) from None
        return out.choices[0].message.content or ""

    with ThreadPoolExecutor(settings.concurrency) as pool:
        return list(pool.map(ask, conversations))


def _score(settings, model, rows, task_type, labels, probes, train_answers):
    from ftagent.tools.evaluate.compare import answer_tokens, scores_from
    from ftagent.tools.evaluate.metrics import metrics_for
    from ftagent.tools.evaluate.refusal import refusal_rates

    max_new = answer_tokens(task_type, labels)
    answers = chat_answers(settings, model, [r["messages"][:-1] for r in rows], max_new)
    refs = [r["messages"][-1]["content"] for r in rows]
    m = metrics_for(task_type, answers, refs, labels or None, train_answers)
    rates, error = None, probes.error
    if (probes.harmful or probes.safe) and not error:
        def generate(_model, _tok, convs, max_tokens):
            return chat_answers(settings, model, convs, max_tokens)

        try:
            rates = refusal_rates(None, None, generate, probes.harmful, probes.safe,
                                  system=probes.system, labels=probes.labels)
        except Exception as exc:  # noqa: BLE001 - a failed probe fails the gate, not the run
            error = f"the safety probe failed: {type(exc).__name__}: {exc}"
    scores = scores_from(m, len(rows), task_type, rates, probes)
    said = [a.model_dump() for a in rates.samples] if rates else []
    return scores, answers, [{"error": error}] if error else said


def evaluate_endpoint(settings: ProviderSettings, tuned_model: str, test_file: str | Path,
                      out_dir: str | Path, task_type: str, labels: list[str] | None = None,
                      train_file: str | Path | None = None, targets: dict | None = None,
                      probes: bool = True):
    """Score `settings.model` (the base) and `tuned_model` on the test split through the
    chat endpoint, judge against the plan's targets and write report.json/report.md;
    returns (EvalReport, Verdict) as `tools.evaluate.request.run_evaluation` does."""
    from ftagent.tools.data.tokens import conversation
    from ftagent.tools.evaluate.compare import (
        EvalReport,
        Probes,
        Sample,
        _spread,
        bundled_probes,
        primary_metric,
        read_rows,
        write_report,
    )
    from ftagent.tools.evaluate.verdict import judge, rows_markdown

    pairs = task_type == "preference"
    task_type = "chat" if pairs else task_type  # pairs: the prompt and its preferred answer
    rows = [{"messages": conversation(r)} for r in read_rows(test_file)]
    found = Probes()
    if probes and settings.probes:  # no ARC: it is scored by option log-likelihood
        found = bundled_probes(test_file, task_type, labels)
        found = found.model_copy(update={"arc": [],
                                         "harmful": _spread(found.harmful, settings.probes),
                                         "safe": _spread(found.safe, settings.probes)})
    train_answers = ([conversation(r)[-1]["content"] for r in read_rows(train_file)]
                     if train_file else None)
    scored = {}
    for which, model in (("base", settings.model), ("tuned", tuned_model)):
        scored[which] = _score(settings, model, rows, task_type, labels, found, train_answers)
    said = [{"model": w, **a} for w in ("base", "tuned") for a in scored[w][2]]
    report = EvalReport(
        task_type=task_type, n_test=len(rows),
        primary_metric=primary_metric(task_type, scored["base"][0]),
        base=scored["base"][0], tuned=scored["tuned"][0],
        samples=[Sample(prompt=r["messages"][-2]["content"],
                        reference=r["messages"][-1]["content"], base=b, tuned=t)
                 for r, b, t in list(zip(rows, scored["base"][1], scored["tuned"][1],
                                         strict=True))[:5]],
        n_probe=len(found.harmful), n_safe=len(found.safe), n_arc=0, probe_samples=said,
        probe_error=next((a["error"] for a in said if "error" in a), None),
    )
    # No loss through a chat endpoint: the plan's loss target cannot be held.
    verdict = judge(report, {**(targets or {}), "loss_must_drop": False})
    verdict.warnings += [NOT_MEASURED] + ([PAIRS_AS_TEXT] if pairs else [])
    write_report(report, Path(out_dir), rows_markdown(verdict.rows))
    return report, verdict
