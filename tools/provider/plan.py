"""The plan for a provider job: the task read from the data, the job's method (DPO for
preference pairs, supervised otherwise), its hyperparameters (the planner's epoch rule
and effective batch; the learning rate and DPO's beta left to the provider), the targets
the tester holds the tuned model to, and the cost: estimated training tokens x epochs x
the provider's price (`settings.TRAINING_USD_PER_MTOK`; unknown for a model not in the
table and for endpoints other than OpenAI's, and said so)."""

from __future__ import annotations

from pathlib import Path

from ftagent.tools.plan.types import Constraints, Targets
from ftagent.tools.provider.files import MIN_EXAMPLES, row_tokens, training_cost
from ftagent.tools.provider.settings import OPENAI_DPO_MODELS, ProviderSettings
from pydantic import BaseModel


class ProviderPlan(BaseModel):
    goal: str
    provider: ProviderSettings
    model: str
    task_type: str
    n_examples: int
    method: str = "provider"  # the workflow's name for "fine-tuned at the provider"
    objective: str = "sft"  # sft: a supervised job; dpo: a DPO job on preference pairs
    hyperparameters: dict  # the job's: n_epochs, batch_size, learning_rate_multiplier(, beta)
    tokens_per_epoch: int  # estimated from the whole data set; data_prep counts the split
    usd_per_mtok: float | None
    cost_usd: float | None
    targets: Targets
    fits: bool = True
    reasons: list[str]
    warnings: list[str] = []


def provider_plan(goal: str, data_path: str | Path, provider: ProviderSettings,
                  constraints: Constraints | None = None) -> ProviderPlan:
    from ftagent.tools.data.prepare import read_and_convert
    from ftagent.tools.data.rows import PrepareOptions
    from ftagent.tools.plan.decide import effective_batch, epochs_for
    from ftagent.tools.plan.planner import data_facts
    from ftagent.tools.tasks import classify_task

    c = constraints or Constraints()
    facts = data_facts(data_path)
    task = classify_task(goal, facts).task_type
    rows = [i.example for i in read_and_convert(data_path, PrepareOptions(
        near_dup_threshold=None)).kept]
    tokens = sum(row_tokens(r) for r in rows)
    n_train = round(len(rows) * 0.8)  # data_prep holds out 10% validation, 10% test
    epochs = int(epochs_for(n_train, facts.n_labels))
    pairs = facts.kind == "preference"  # the data decides the job's method
    hyper = {"n_epochs": epochs, "batch_size": effective_batch(n_train),
             "learning_rate_multiplier": "auto"} | ({"beta": "auto"} if pairs else {})
    price = provider.price_per_mtok()
    cost = training_cost(round(tokens * 0.8), epochs, price)
    targets = provider_targets(task, pairs, c)
    reasons = [
        f"Provider fine-tuning: {provider.describe()}; ftagent prepares and checks the data, "
        "runs the job there, follows it and evaluates the tuned model through the chat "
        "endpoint. Nothing is trained or merged on this machine.",
        f"Task: {task.replace('_', ' ')}, {len(rows)} usable examples.",
        f"Job: {epochs} epochs (the planner's rule for {n_train} training rows"
        + (f", {facts.n_labels} labels" if facts.n_labels else "") + f"), batch "
        f"{hyper['batch_size']}; learning-rate multiplier auto: the provider's base rate is "
        "not disclosed, so it is left to the provider (edit learning_rate at a gate to set "
        "it: multiplier = learning_rate / 2e-4).",
    ]
    if pairs:
        reasons.append(
            "Method: DPO on preference pairs (a job with method dpo; each training line is "
            "the prompt's messages, the preferred and the non-preferred answer); beta auto "
            "(edit dpo_beta at a gate to set it). Judged by ROUGE-L of the tuned model's "
            "answers against the preferred answers, relative to the base: preference "
            "accuracy needs log-likelihoods a chat endpoint does not give.")
    if cost is not None:
        reasons.append(
            f"Cost: about {round(tokens * 0.8):,} training tokens x {epochs} epochs x "
            f"${price:g} per million = ${cost:.2f} (tokens estimated at 4 characters each "
            "plus OpenAI's per-message framing"
            + ("; a pair counts its prompt and both answers" if pairs else "")
            + "; the provider bills what its tokenizer counts; evaluation requests are "
            "extra).")
    else:
        why = ("this endpoint is not OpenAI's: its operator sets any price"
               if not provider.is_openai else f"{provider.model} is not in ftagent's price "
               "table (tools/provider/settings.py)")
        reasons.append(f"Cost: unknown ({why}); about {round(tokens * 0.8):,} training "
                       f"tokens x {epochs} epochs.")
    warnings = []
    if c.method == "dpo" and not pairs:
        warnings.append("DPO needs preference pairs (prompt, chosen, rejected); this data "
                        "has one answer a prompt, so the job would be supervised.")
    if pairs and provider.is_openai and provider.model not in OPENAI_DPO_MODELS:
        warnings.append(f"OpenAI's DPO guide lists {', '.join(OPENAI_DPO_MODELS)} for DPO; "
                        f"a DPO job on {provider.model} may be refused.")
    if n_train < MIN_EXAMPLES:
        warnings.append(f"{n_train} training rows: OpenAI needs at least {MIN_EXAMPLES}.")
    if c.budget_usd is not None and cost is not None and cost > c.budget_usd:
        warnings.append(f"the estimated cost ${cost:.2f} is over the budget "
                        f"${c.budget_usd:.2f}.")
    return ProviderPlan(goal=goal, provider=provider, model=provider.model, task_type=task,
                        n_examples=len(rows), objective="dpo" if pairs else "sft",
                        hyperparameters=hyper, tokens_per_epoch=tokens,
                        usd_per_mtok=price, cost_usd=cost, targets=targets,
                        fits=not warnings, reasons=reasons, warnings=warnings)


def provider_targets(task: str, pairs: bool, c: Constraints) -> Targets:
    """The tester's targets for a provider job: the task's, without a loss target (no
    held-out loss through a chat endpoint). Preference pairs are judged by the answers'
    ROUGE-L against the preferred answers, relative to the base only (no floor), with the
    free-text gain: the pairs' own metric needs log-likelihoods."""
    from ftagent.tools.plan.decide import TEXT_GAIN, targets_for

    targets, _ = targets_for(task, c)
    targets.loss_must_drop = False
    if pairs or task == "preference":
        targets.primary_metric, targets.floors = "rouge_l", {}
        targets.min_gain = c.min_gain if c.min_gain is not None else TEXT_GAIN
    return targets


def provider_plan_markdown(p: ProviderPlan) -> str:
    cost = f"${p.cost_usd:.2f}" if p.cost_usd is not None else "unknown"
    lines = [f"# Plan: {p.goal}", "", "## Approach", "",
             *[f"- {r}" for r in p.reasons], "",
             "## Training configuration (the provider job)", "",
             "| setting | value |", "|---|---|",
             f"| base model | {p.model} |", f"| endpoint | {p.provider.url} |",
             f"| method | {'dpo' if p.objective == 'dpo' else 'supervised'} |",
             *[f"| {k} | {v} |" for k, v in p.hyperparameters.items()], "",
             "## Evaluation plan", "",
             f"- Primary metric {p.targets.primary_metric}: tuned >= base "
             f"{p.targets.min_gain:+.2f}" + "".join(f", {k} >= {v:g}"
                                                    for k, v in p.targets.floors.items()),
             "- Base and tuned answer the held-out test split through the provider's chat "
             "endpoint (greedy); the safety probes go the same way. No held-out loss or "
             "ARC-Easy check: they need log-probabilities a chat endpoint does not give"
             + ("; preference pairs are scored by their preferred answers." if
                p.objective == "dpo" else "."), "",
             "## Cost estimate", "",
             f"- {p.tokens_per_epoch:,} tokens in the whole data set (estimated), "
             f"{p.hyperparameters['n_epochs']} epochs on the training split; price "
             + (f"${p.usd_per_mtok:g} per million training tokens" if p.usd_per_mtok
                is not None else "unknown") + f"; total {cost}.", ""]
    if p.warnings:
        lines += ["## Risks", "", *[f"- {w}" for w in p.warnings], ""]
    return "\n".join(lines)
