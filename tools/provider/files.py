"""The provider's training files, written from the prepared splits and read back through
the same line-by-line checks an uploaded file gets from `ftagent serve --fine-tuning`
(`tools.config.openai_jobs`), so a file that would fail the provider's validation fails
here first, naming file, line and field:

- supervised: one `{"messages": [...]}` object a line (OpenAI's chat format);
- dpo: one `{"input": {"messages": [...]}, "preferred_output": [{"role": "assistant",
  "content": ...}], "non_preferred_output": [...]}` object a line (OpenAI's preference
  format: the prompt's messages, then one answer on each side).

Token counts for the cost estimate are an approximation (see `estimate_tokens`)."""

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


def row_tokens(row: dict) -> int:
    """Estimated tokens of one prepared or checked row: a chat row's messages; a preference
    pair's prompt and both answers (a DPO job reads both; how OpenAI counts a pair's
    billed tokens is not in its pricing or DPO pages)."""
    if "messages" in row:
        return estimate_tokens(row["messages"])
    return estimate_tokens(row["prompt"] + row["chosen"][-1:] + row["rejected"][-1:])


def _split_rows(split: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(split).read_text(encoding="utf-8").splitlines()
            if line.strip()]


def _message(m) -> dict:
    """A message as the provider gets it: role and content, nothing of ftagent's fields;
    anything else is passed on as it is for the checks to name."""
    return {"role": m.get("role"), "content": m.get("content")} if isinstance(m, dict) else m


def chat_rows(split: str | Path) -> list[dict]:
    """A prepared split (chat rows; prompt/chosen rows as their chosen conversation) as
    the provider's rows: the messages only, nothing of ftagent's own fields."""
    from ftagent.tools.data.tokens import conversation

    return [{"messages": [_message(m) for m in conversation(r)]} for r in _split_rows(split)]


def preference_rows(split: str | Path) -> list[dict]:
    """A prepared split of preference pairs ({prompt, chosen, rejected}) as OpenAI's DPO
    lines: the prompt's messages as `input.messages`, the last message of each answer as
    `preferred_output` and `non_preferred_output`. A row that is no pair is written as far
    as it goes, for the checks to name what is missing."""
    def last(answer) -> list:
        return [_message(answer[-1])] if isinstance(answer, list) and answer else answer

    return [{"input": {"messages": [_message(m) for m in r.get("prompt") or []]},
             "preferred_output": last(r.get("chosen")),
             "non_preferred_output": last(r.get("rejected"))} for r in _split_rows(split)]


def write_provider_file(split: str | Path, out: str | Path, name: str,
                        method: str = "supervised") -> ProviderFile:
    """Write `out` from the split in the format of the job's `method` (supervised or dpo)
    and check it line by line as the provider would; ConfigImportError names `name`, the
    line and the field of a bad row."""
    from ftagent.tools.atomic import write_jsonl
    from ftagent.tools.config.openai_jobs import read_openai_chat, read_openai_preference

    dpo = method == "dpo"
    write_jsonl(Path(out), preference_rows(split) if dpo else chat_rows(split))
    checked = (read_openai_preference if dpo else read_openai_chat)(out, name=name)
    return ProviderFile(path=str(out), examples=len(checked.rows),
                        tokens=sum(row_tokens(r) for r in checked.rows))


def training_cost(tokens: int, epochs: float, usd_per_mtok: float | None) -> float | None:
    """Tokens x epochs x price; None when the price is unknown."""
    if usd_per_mtok is None:
        return None
    return round(tokens * epochs * usd_per_mtok / 1e6, 4)
