"""How to reach a teacher and what a generation may cost."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path

from pydantic import BaseModel, Field

DEFAULT_MAX_TOKENS = 256


class TeacherSettings(BaseModel):
    """A teacher: an OpenAI-compatible endpoint (`base_url` + `model`), or a local model
    folder (`model` is its path, no `base_url`) run by ftagent's own batched generation."""

    model: str = Field(description="endpoint model name, or a local model folder")
    base_url: str | None = Field(
        None, description="OpenAI-compatible base URL (…/v1); none: `model` is a local folder")
    api_key_env: str = Field(
        "OPENAI_API_KEY", description="environment variable holding the endpoint's key")
    temperature: float = Field(0.0, ge=0, le=2, description="0: greedy, reproducible answers")
    max_tokens: int = Field(DEFAULT_MAX_TOKENS, ge=1, description="longest answer, tokens")
    concurrency: int = Field(4, ge=1, le=64, description="requests in flight at once")
    requests_per_minute: float = Field(
        600, gt=0, description="rate limit: requests started per minute, at most")
    max_retries: int = Field(
        5, ge=0, description="retries with exponential backoff (429, 5xx, timeouts)")
    timeout_s: float = Field(120, gt=0, description="per request")
    price_in_per_mtok: float = Field(
        0.0, ge=0, description="USD per million prompt tokens (0: free, e.g. local)")
    price_out_per_mtok: float = Field(
        0.0, ge=0, description="USD per million answer tokens")
    batch_size: int = Field(16, ge=1, description="local teacher: prompts per batch")

    @property
    def local(self) -> bool:
        return not self.base_url

    @property
    def name(self) -> str:
        return Path(self.model).name if self.local else self.model

    def api_key(self) -> str:
        """The key from the environment (never stored in a run); local servers need none."""
        return os.environ.get(self.api_key_env) or "not-needed"

    def identity(self) -> dict:
        """What makes two answers the same answer: who wrote it and how. Concurrency, rate
        limits and prices do not change an answer, so they stay out of the cache key."""
        who = str(Path(self.model).resolve()) if self.local else self.model
        return {"teacher": who, "base_url": self.base_url, "temperature": self.temperature,
                "max_tokens": self.max_tokens}

    def describe(self) -> str:
        where = "local folder" if self.local else self.base_url
        return (f"{self.name} ({where}, temperature {self.temperature:g}, "
                f"max {self.max_tokens} tokens)")


def request_key(settings: TeacherSettings, messages: list[dict]) -> str:
    """Cache key of one request: the teacher's identity and the exact messages."""
    blob = json.dumps({"who": settings.identity(), "messages": messages}, sort_keys=True,
                      ensure_ascii=False)
    return hashlib.sha256(blob.encode()).hexdigest()


class TeacherConfigError(ValueError):
    """A teacher settings file that does not parse or validate; names file and field."""


def default_cache() -> Path:
    """One cache for every run on this machine: a repeated distillation never pays twice."""
    from ftagent.tools.paths import ftagent_home

    return ftagent_home() / "teacher" / "answers.sqlite"


def load_teacher(model: str | None, base_url: str | None = None,
                 config: str | Path | None = None, **fields) -> TeacherSettings:
    """Settings from a YAML file (any TeacherSettings field), then the named options on top
    (None leaves the file's value). A model that is neither reachable by URL nor a folder
    here is an error that says what to pass."""
    import yaml
    from pydantic import ValidationError

    data: dict = {}
    if config:
        try:
            data = yaml.safe_load(Path(config).read_text()) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise TeacherConfigError(f"{config}: {exc}") from None
        if not isinstance(data, dict):
            raise TeacherConfigError(f"{config}: expected a mapping of teacher settings")
    data |= {k: v for k, v in {"model": model, "base_url": base_url, **fields}.items()
             if v is not None}
    try:
        s = TeacherSettings(**data)
    except ValidationError as exc:
        e = exc.errors()[0]
        where = f"{config}: " if config else ""
        raise TeacherConfigError(f"{where}field {'.'.join(map(str, e['loc']))}: {e['msg']}") \
            from None
    if s.local and not (Path(s.model).expanduser() / "config.json").exists():
        raise TeacherConfigError(
            f"teacher {s.model!r} is not a model folder here; give --teacher-url for an "
            "OpenAI-compatible endpoint (e.g. http://127.0.0.1:8000/v1) or a local folder")
    return s
