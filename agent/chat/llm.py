"""Which LLM the assistant talks through: an OpenAI-compatible endpoint, the bundled model
in-process, or none (the intent parser and the knowledge base still work).

Settings come from `$FTAGENT_HOME/llm.yaml` (written by `ftagent config llm`), then the
usual environment variables override them: OPENAI_BASE_URL, OPENAI_API_KEY and
FTAGENT_LLM_MODEL (FTAGENT_LLM_BACKEND picks the backend).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

import yaml
from ftagent.tools.atomic import write_text
from ftagent.tools.paths import ftagent_home
from pydantic import BaseModel, Field

Backend = Literal["none", "openai", "local"]


class LLMSettings(BaseModel):
    backend: Backend = Field("none", description="none | openai (any compatible endpoint) | "
                             "local (a transformers chat model in-process)")
    base_url: str | None = Field(None, description="e.g. http://127.0.0.1:11434/v1 (Ollama), "
                                 "http://127.0.0.1:8000/v1 (vLLM); empty: api.openai.com")
    model: str = Field("gpt-4o-mini", description="model name at the endpoint, or the local "
                       "model (bundled name or folder)")
    api_key_env: str = Field("OPENAI_API_KEY", description="environment variable holding the "
                             "key (keys are never written to the settings file)")
    timeout_s: float = 60.0
    max_retries: int = 2
    temperature: float = 0.2
    max_tokens: int = Field(512, description="longest reply, in tokens")
    share_rows: bool = Field(False, description="a remote endpoint may see quotes of data "
                             "rows (rows flagged as personal data or secrets never do)")

    def remote(self) -> bool:
        """Does text sent to this LLM leave the machine?"""
        from ftagent.agent.chat.privacy import is_remote

        return self.backend == "openai" and is_remote(self.base_url)

    def api_key(self) -> str:
        # Local servers (Ollama, llama.cpp, ftagent serve) accept any key; the client needs one.
        return os.environ.get(self.api_key_env) or "not-needed"

    def local_model(self) -> str:
        """The in-process model: the bundled one unless a local model was named."""
        return "smollm2-135m-instruct" if self.model == "gpt-4o-mini" else self.model

    def describe(self) -> str:
        if self.backend == "none":
            return "no LLM (slash commands, the intent parser and the knowledge base)"
        if self.backend == "local":
            return f"local model {self.local_model()} (in-process)"
        return f"{self.model} at {self.base_url or 'the OpenAI API'}"


def settings_path() -> Path:
    return ftagent_home() / "llm.yaml"


def load_settings() -> LLMSettings:
    path = settings_path()
    data = yaml.safe_load(path.read_text(encoding="utf-8")) if path.is_file() else {}
    s = LLMSettings.model_validate(data or {})
    env = os.environ
    if env.get("FTAGENT_LLM_BACKEND"):
        s.backend = env["FTAGENT_LLM_BACKEND"]  # type: ignore[assignment]
    if env.get("OPENAI_BASE_URL"):
        s.base_url = env["OPENAI_BASE_URL"]
        if s.backend == "none" and not path.is_file():
            s.backend = "openai"
    if env.get("FTAGENT_LLM_MODEL"):
        s.model = env["FTAGENT_LLM_MODEL"]
    if s.backend == "none" and not path.is_file() and env.get("OPENAI_API_KEY"):
        s.backend = "openai"  # the usual variables alone configure OpenAI
    return LLMSettings.model_validate(s.model_dump())


def save_settings(s: LLMSettings) -> Path:
    path = settings_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    write_text(path, yaml.safe_dump(s.model_dump(), sort_keys=False))
    return path


class LLMUnavailable(RuntimeError):
    """The endpoint cannot be used; the message says what to do. The workflow goes on."""


def make_chat_model(s: LLMSettings):
    """A langchain-core chat model for the settings, or None for backend "none"."""
    if s.backend == "none":
        return None
    if s.backend == "local":
        from ftagent.agent.chat.local_llm import LocalChatModel

        return LocalChatModel.load(s.local_model(), temperature=s.temperature,
                                   max_new_tokens=s.max_tokens)
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(model=s.model, base_url=s.base_url, api_key=s.api_key(),
                      timeout=s.timeout_s, max_retries=s.max_retries,
                      temperature=s.temperature, max_tokens=s.max_tokens)


def explain_error(exc: Exception, s: LLMSettings) -> str:
    """One line on what broke and what to do, for the openai client's errors."""
    import openai

    where = s.base_url or "the OpenAI API"
    if isinstance(exc, openai.AuthenticationError):
        return (f"{where} refused the API key (401): set {s.api_key_env} to a valid key, or "
                "run `ftagent config llm` to change endpoints.")
    if isinstance(exc, openai.APIConnectionError | openai.APITimeoutError):
        return (f"cannot reach {where}: is the server running? Check OPENAI_BASE_URL or "
                "`ftagent config llm`. Slash commands and plain requests still work.")
    if isinstance(exc, openai.NotFoundError):
        return (f"{where} has no model '{s.model}': set FTAGENT_LLM_MODEL or "
                "`ftagent config llm --model NAME`.")
    if isinstance(exc, openai.APIStatusError):
        return f"{where} answered {exc.status_code}: {exc.message}"
    return f"{type(exc).__name__}: {exc}"


def check(s: LLMSettings) -> str:
    """Ask the endpoint for one short reply; raise LLMUnavailable with what to do."""
    model = make_chat_model(s)
    if model is None:
        return "no LLM configured"
    try:
        reply = model.invoke("Say OK.", max_tokens=8)
    except Exception as exc:  # noqa: BLE001 - every failure becomes advice
        raise LLMUnavailable(explain_error(exc, s)) from exc
    return str(reply.content)
