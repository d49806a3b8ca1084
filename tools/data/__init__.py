"""Dataset reading, schema detection, validation, fixing and splitting (no agent, no UI)."""

from ftagent.tools.data.prepare import (
    DataError,
    PrepareOptions,
    prepare_dataset,
    summarize,
    validate_dataset,
)
from ftagent.tools.data.report import DataReport

__all__ = [
    "DataError",
    "DataReport",
    "PrepareOptions",
    "prepare_dataset",
    "summarize",
    "validate_dataset",
]
