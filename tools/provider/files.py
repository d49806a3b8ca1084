"""The provider's chat JSONL: one `{"messages": [...]}` object a line, written from the
prepared splits and read back through the same line-by-line checks an uploaded file gets
from `ftagent serve --fine-tuning` (`tools.config.openai_jobs.read_openai_chat`), so a
file that would fail the provider's validation fails here first, naming file, line and
field. Token counts for the cost estimate are an approximation (see `estimate_tokens`)."""

from __future__ import annotations

import json
from pathlib import Path

from pydantic import BaseModel

MIN_EXAMPLES = 10  # OpenAI refuses training files with fewer examples
# OpenAI's cookbook counts 3 tokens of framing per message and 3 to prime the reply; the
# text itself is estimated at 4 characters a token (OpenAI's rule of thumb for English),
# which needs no tokenizer download (tiktoken fetches its tables from the network).
TOKENS_PER_MESSAGE = 3
TOKENS_PER_EXAMPLE = 3
CHARS_PER_TOKEN = 4


class ProviderFile(BaseModel):
    path: str
    examples: int
    tokens: int  # estimated, one epoch


def estimate_tokens(messages: list[dict]) -> int:
    """Tokens of one example as a chat model counts them, estimated."""
    text = sum(len(str(m.get("content") or "")) for m in messages)
    return (TOKENS_PER_EXAMPLE + TOKENS_PER_MESSAGE * len(messages)
            + -(-text // CHARS_PER_TOKEN))


def chat_rows(split: str | Path) -> list[dict]:
    """A prepared split (chat rows; prompt/chosen rows as their chosen conversation) as
    the provider's rows: the messages only, nothing of ftagent's own fields."""
    from ftagent.tools.data.tokens import conversation

    rows = []
    for line in Path(split).read_text(encoding="utf-8").splitlines():
        if line.strip():
            rows.append({"messages": [{"role": m["role"], "content": m["content"]}
                                      for m in conversation(json.loads(line))]})
    return rows


def write_provider_file(split: str | Path, out: str | Path, name: str) -> ProviderFile:
    """Write `out` from the split and check it line by line as the provider would;
    ConfigImportError names `name`, the line and the field of a bad row."""
    from ftagent.tools.atomic import write_jsonl
    from ftagent.tools.config.openai_jobs import read_openai_chat

    write_jsonl(Path(out), chat_rows(split))
    checked = read_openai_chat(out, name=name)
    return ProviderFile(path=str(out), examples=len(checked.rows),
                        tokens=sum(estimate_tokens(r["messages"]) for r in checked.rows))


def training_cost(tokens: int, epochs: float, usd_per_mtok: float | None) -> float | None:
    """Tokens x epochs x price; None when the price is unknown."""
    if usd_per_mtok is None:
        return None
    return round(tokens * epochs * usd_per_mtok / 1e6, 4)
