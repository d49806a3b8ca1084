"""The model card of a provider-tuned model: the same card as a local model's
(`tools.deploy.card.model_card`: data, base-vs-tuned table, intended use and limits) with
the provider job in place of the training config and merge checks. No key, ever: the
settings hold only the name of the variable that holds it."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ftagent.tools.atomic import write_text
from ftagent.tools.provider.settings import ProviderSettings


def provider_card(model_id: str, settings: ProviderSettings, *, goal: str | None,
                  job: dict, data: dict | None, eval_report: dict | None,
                  cost_usd: float | None) -> str:
    from ftagent.tools.deploy.card import model_card

    method = job.get("method") or "supervised"
    text = model_card(model_id, {"name": settings.model, "licence": "the provider's terms "
                                 f"({settings.url})"}, f"provider fine-tuning ({method})",
                      goal=goal, data=data, eval_report=eval_report,
                      limits=["Served by the provider only: the weights never leave it; the "
                              "held-out loss and ARC-Easy forgetting check were not measured "
                              "(a chat endpoint gives no log-probabilities)."])
    when = ", ".join(f"{t['status']} {datetime.fromtimestamp(t['time'], UTC):%Y-%m-%d %H:%M:%S}"
                     for t in job.get("timeline") or [])
    lines = ["", "## Provider job", "",
             f"- model id: `{model_id}`", f"- endpoint: {settings.url}",
             f"- job: `{job.get('provider_job')}`; files: "
             + ", ".join(f"{k} `{v}`" for k, v in (job.get("files") or {}).items()),
             f"- hyperparameters: {job.get('hyperparameters')}",
             f"- steps: {job.get('global_step')}; trained tokens: "
             f"{job.get('trained_tokens') or 'not reported'}",
             "- estimated training cost: " + (f"${cost_usd:.2f}" if cost_usd is not None
                                              else "unknown (no price for this endpoint)"),
             f"- timeline (UTC): {when}", "",
             "Use it with any OpenAI client: `client.chat.completions.create(model="
             f"\"{model_id}\", messages=[...])` at {settings.url}.", ""]
    return text + "\n".join(lines)


def write_provider_card(folder: str | Path, model_id: str, settings: ProviderSettings,
                        **inputs) -> Path:
    return write_text(Path(folder) / "README.md",
                      provider_card(model_id, settings, **inputs))
