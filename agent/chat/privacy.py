"""What of a person's data may reach an LLM endpoint.

Tool results go back to the LLM (the validation report quotes rows, the plan shows a
few-shot prompt built from them, a diagnosis shows samples). A local LLM stays on this
machine; a remote endpoint gets no line that quotes a data row unless the person allowed
it (`ftagent config llm --share-rows`), and never a row flagged as personal data or a
secret, allowed or not. The person always sees the whole text.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlparse

WITHHELD = "[a line quoting your data was withheld from the remote LLM]"
MIN_QUOTE = 12  # characters of a row's text that identify a quote of it


def is_remote(base_url: str | None) -> bool:
    """Anything but a loopback address is remote; no base_url means api.openai.com."""
    if not base_url:
        return True
    host = (urlparse(base_url).hostname or "").lower()
    return not (host in ("localhost", "::1") or host.startswith("127."))


def _texts(value) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in _texts(v)]
    if isinstance(value, list):
        return [t for v in value for t in _texts(v)]
    return []


def row_texts(paths: list[Path]) -> list[tuple[str, bool]]:
    """Every string field of every row in the files: (text, flagged as PII or a secret)."""
    from ftagent.tools.data.checks import pii_kinds
    from ftagent.tools.data.readers import ReadError, read_records

    out = []
    for path in paths:
        try:
            for rec in read_records(path):
                for text in _texts(rec.data or {}):
                    text = text.strip()
                    if len(text) >= 4:
                        out.append((text, bool(pii_kinds(text))))
        except (ReadError, OSError, ValueError):
            continue
    return out


def data_files(data_path: str | None, run_dir: Path | None) -> list[Path]:
    files = [Path(data_path).expanduser()] if data_path else []
    if run_dir is not None:
        files += sorted((Path(run_dir) / "data").glob("*.jsonl"))
    return [f for f in files if f.is_file()]


def _quotes(line: str, text: str) -> bool:
    probe = text[:MIN_QUOTE * 4] if len(text) > MIN_QUOTE else text
    if len(text) <= MIN_QUOTE:  # short values (labels) are not private content
        return False
    quoted = line.strip().strip("…. \"'")
    return probe[:MIN_QUOTE * 2] in line or (len(quoted) >= MIN_QUOTE and quoted in text)


def for_llm(text: str, rows: list[tuple[str, bool]], share_rows: bool) -> str:
    """`text` with each line that quotes a withheld row replaced by a notice."""
    withheld = [t for t, pii in rows if pii or not share_rows]
    if not withheld:
        return text
    out = []
    for line in text.splitlines():
        out.append(WITHHELD if any(_quotes(line, t) for t in withheld) else line)
    return "\n".join(out)
