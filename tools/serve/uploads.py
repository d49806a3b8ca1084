"""Streaming `multipart/form-data` uploads: file parts go straight to disk, chunk by chunk,
under a size limit, and small text fields are kept in memory under a small one.

Why not FastAPI's `UploadFile`: it parses the whole body (spooled to a temporary file)
before the route runs, so a size limit could only be checked after the bytes arrived, and
it needs python-multipart. This parser reads the request as it streams, writes the one
file part to the path the caller chose (the client's filename is returned as metadata and
never becomes part of a path), and stops at the limit. Nothing uploaded is interpreted.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

FIELD_LIMIT = 64 * 1024  # a text field (purpose, ...) is never this long


class UploadError(ValueError):
    """A body that cannot be taken: `status` 400 (malformed) or 413 (too large)."""

    def __init__(self, message: str, status: int = 400):
        super().__init__(message)
        self.status = status


@dataclass
class Upload:
    fields: dict[str, str] = field(default_factory=dict)
    filename: str | None = None  # as the client sent it: metadata only
    file_field: str | None = None
    bytes: int = 0  # size of the file part


def boundary_of(content_type: str) -> bytes:
    m = re.search(r'boundary="?([^";]+)"?', content_type or "")
    if not content_type.lower().startswith("multipart/form-data") or not m:
        raise UploadError("expected a multipart/form-data body with a boundary")
    return m.group(1).encode("latin-1")


def _disposition(headers: bytes) -> tuple[str, str | None]:
    """The part's field name and filename, from its Content-Disposition header."""
    text = headers.decode("utf-8", errors="replace")
    line = next((x for x in text.split("\r\n") if x.lower().startswith("content-disposition")),
                "")
    name = re.search(r';\s*name="([^"]*)"', line)
    filename = re.search(r';\s*filename="([^"]*)"', line)
    if not name:
        raise UploadError("a form part has no Content-Disposition name")
    return name.group(1), filename.group(1) if filename else None


async def receive_upload(chunks: AsyncIterator[bytes], content_type: str, file_path: Path,
                         max_bytes: int, file_field: str = "file") -> Upload:
    """Parse a multipart body from `chunks`; the part named `file_field` is written to
    `file_path` (created, never overwritten), other parts become text fields. Raises
    UploadError (the partial file is removed) on a malformed body, a second file, or a
    file larger than `max_bytes`."""
    delimiter = b"\r\n--" + boundary_of(content_type)
    buf, out, state = b"\r\n", Upload(), "preamble"
    sink, part_name, text = None, "", bytearray()
    try:
        async for chunk in chunks:
            buf += chunk
            while True:
                if state == "preamble":
                    at = buf.find(delimiter)
                    if at < 0:
                        buf = buf[-len(delimiter):]
                        break
                    buf, state = buf[at + len(delimiter):], "after_delimiter"
                if state == "after_delimiter":
                    if len(buf) < 2:
                        break
                    if buf[:2] == b"--":
                        state = "done"
                        break
                    if buf[:2] != b"\r\n":
                        raise UploadError("malformed multipart body")
                    buf, state = buf[2:], "headers"
                if state == "headers":
                    end = buf.find(b"\r\n\r\n")
                    if end < 0:
                        if len(buf) > FIELD_LIMIT:
                            raise UploadError("a form part's headers are too long")
                        break
                    part_name, filename = _disposition(buf[:end])
                    buf, state, text = buf[end + 4:], "body", bytearray()
                    if part_name == file_field:
                        if sink is not None:
                            raise UploadError(f"more than one `{file_field}` part")
                        out.filename, out.file_field = filename or "", part_name
                        sink = file_path.open("xb")
                if state == "body":
                    at = buf.find(delimiter)
                    # bytes that cannot be the start of a delimiter are safe to hand on
                    safe = at if at >= 0 else max(len(buf) - len(delimiter) + 1, 0)
                    data, buf = buf[:safe], buf[safe:]
                    if part_name == file_field:
                        out.bytes += len(data)
                        if out.bytes > max_bytes:
                            raise UploadError(f"the file is larger than the server's limit of "
                                              f"{max_bytes // 2**20} MB", 413)
                        sink.write(data)
                    else:
                        text += data
                        if len(text) > FIELD_LIMIT:
                            raise UploadError(f"form field `{part_name}` is too long")
                    if at < 0:
                        break
                    if part_name != file_field:
                        out.fields[part_name] = text.decode("utf-8", errors="replace")
                    buf, state = buf[len(delimiter):], "after_delimiter"
            if state == "done":
                break
        if state != "done":
            raise UploadError("the multipart body ended early (no closing boundary)")
        if sink is None:
            raise UploadError(f"no `{file_field}` part in the form", 400)
    except BaseException:
        if sink is not None:
            sink.close()
            file_path.unlink(missing_ok=True)
        raise
    sink.close()
    return out
