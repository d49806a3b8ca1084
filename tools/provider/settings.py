"""Where a provider job runs, what it costs, and how the client is made.

The key is read from the environment variable the settings name, when a client is made,
and nowhere else: settings hold the variable's name, never its value, so they can be
stored in a run's manifest and state.
"""

from __future__ import annotations

import os

from pydantic import BaseModel, Field

OPENAI_URL = "https://api.openai.com/v1"

# USD per million training tokens (tokens in the training file x epochs), OpenAI's
# fine-tuning "Training" column. Read 2026-12-07, from copies of OpenAI's pricing pages
# (OpenAI's own site was not reachable from here):
# - https://platform.openai.com/docs/pricing as of mid-2025, kept in
#   github.com/dakota-jamie-sims/OpenAI-Learning-Center-Agent
#   (docs/openai_documentation/03_Models/02_Pricing.md): gpt-4.1-2025-04-14 $25,
#   gpt-4.1-mini-2025-04-14 $5, gpt-4.1-nano-2025-04-14 $1.50, gpt-4o-2024-08-06 $25,
#   gpt-4o-mini-2024-07-18 $3, gpt-3.5-turbo $8 (one row for the family, no snapshot
#   named: here under the names a job may give);
# - https://openai.com/api/pricing/ of the GPT-5 era (a copy in a public repository): the
#   gpt-4.1 family's $25, $5 and $1.50 again;
# - OpenAI's GPT-4o fine-tuning announcement (2024-08-20, as reported): $25.
# All sources agree with the prices written before (from memory): none changed; the
# gpt-3.5-turbo names were added. One
# price per model covers supervised and DPO jobs: the page lists no separate DPO price.
# Prices change: edit this table, or see the plan's cost line say "unknown" for a model
# not in it. OpenAI's DPO guide (read 2026-12-07) says OpenAI is winding down fine-tuning:
# no new users; existing ones can create jobs "for the coming months".
TRAINING_USD_PER_MTOK: dict[str, float] = {
    "gpt-4.1-2025-04-14": 25.00,
    "gpt-4.1-mini-2025-04-14": 5.00,
    "gpt-4.1-nano-2025-04-14": 1.50,
    "gpt-4o-2024-08-06": 25.00,
    "gpt-4o-mini-2024-07-18": 3.00,
    "gpt-3.5-turbo": 8.00,
    "gpt-3.5-turbo-0125": 8.00,
    "gpt-3.5-turbo-1106": 8.00,
}

# The base models OpenAI's DPO guide lists for `method: dpo`
# (https://developers.openai.com/api/docs/guides/direct-preference-optimization, read
# 2026-12-07): a DPO plan for another OpenAI model warns that the job may be refused.
OPENAI_DPO_MODELS = ("gpt-4.1-2025-04-14", "gpt-4.1-mini-2025-04-14",
                     "gpt-4.1-nano-2025-04-14")

# Families OpenAI fine-tunes: a name starting with one of these (a dated snapshot, an
# `ft:` model of one) is an API model, even if the price table does not list it yet.
OPENAI_FAMILIES = ("gpt-4.1", "gpt-4o", "gpt-3.5-turbo", "ft:gpt-")


class ProviderError(RuntimeError):
    """A provider call that failed, said in one line with what to do."""


def is_openai_model(name: str | None) -> bool:
    """Does this base model name mean OpenAI's fine-tuning API?"""
    return bool(name) and any(str(name).startswith(f) for f in OPENAI_FAMILIES)


class ProviderSettings(BaseModel):
    """A base model at a provider's OpenAI-compatible fine-tuning API."""

    model: str = Field(description="the provider's base model, e.g. gpt-4o-mini-2024-07-18")
    base_url: str | None = Field(
        None, description="the API's base URL (…/v1); none: OpenAI's own API")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="environment variable holding the key (the key itself "
        "is never stored)")
    poll_s: float = Field(5.0, gt=0, description="seconds between polls of a running job")
    timeout_s: float = Field(120, gt=0, description="per request")
    concurrency: int = Field(4, ge=1, le=32, description="evaluation requests in flight")
    probes: int = Field(
        50, ge=0, description="safety probes of each kind (harmful requests, benign "
        "look-alikes) asked of base and tuned: paid requests at a provider; 0: none, and the "
        "safety gate's check then fails as not run")

    @property
    def url(self) -> str:
        return self.base_url or OPENAI_URL

    @property
    def is_openai(self) -> bool:
        return self.url.rstrip("/") == OPENAI_URL

    def price_per_mtok(self) -> float | None:
        """OpenAI's training price for the model; None where it is unknown: a model not in
        the table, or another endpoint (its operator sets the price, if any)."""
        return TRAINING_USD_PER_MTOK.get(self.model) if self.is_openai else None

    def api_key(self) -> str | None:
        return os.environ.get(self.api_key_env) or None

    def describe(self) -> str:
        return f"{self.model} at {self.url}"

    def client(self):
        """The official client for the endpoint; ProviderError when the key is not set."""
        import openai

        key = self.api_key()
        if key is None:
            raise ProviderError(f"set {self.api_key_env} to the API key of {self.url} (the "
                                "key is read from the environment only)")
        return openai.OpenAI(base_url=self.url, api_key=key, timeout=self.timeout_s,
                             max_retries=2)
