"""What of a person's data may reach an LLM endpoint (agent/chat/privacy.py)."""

import json

from ftagent.agent.chat.llm import LLMSettings
from ftagent.agent.chat.privacy import WITHHELD, data_files, for_llm, is_remote, row_texts


def test_only_loopback_is_local():
    assert not is_remote("http://127.0.0.1:8000/v1") and not is_remote("http://localhost:1/v1")
    assert is_remote(None) and is_remote("https://api.openai.com/v1")
    assert is_remote("http://10.0.0.5:8000/v1")
    assert not LLMSettings(backend="local").remote()
    assert LLMSettings(backend="openai", base_url="https://example.com/v1").remote()


def test_quoted_rows_are_withheld_and_pii_rows_always(tmp_path):
    data = tmp_path / "d.jsonl"
    rows = [{"text": "my card arrived broken and the app keeps crashing", "label": "card"},
            {"text": "write to me at jane.doe@example.com about the refund", "label": "refund"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    found = row_texts(data_files(str(data), None))
    assert ("write to me at jane.doe@example.com about the refund", True) in found
    result = ("Problems found:\n"
              "  duplicate: 1 (row 1: 'my card arrived broken and the app keeps…')\n"
              "  pii: 1 (row 2: 'write to me at jane.doe@example.com about…')\n"
              "Labels: card, refund")
    withheld = for_llm(result, found, share_rows=False).splitlines()
    assert withheld == ["Problems found:", WITHHELD, WITHHELD, "Labels: card, refund"]
    allowed = for_llm(result, found, share_rows=True).splitlines()
    assert allowed[1].startswith("  duplicate") and allowed[2] == WITHHELD  # PII never leaves
