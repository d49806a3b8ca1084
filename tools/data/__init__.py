"""Dataset reading, schema detection, validation, fixing and splitting (no agent, no UI)."""

from ftagent.tools.data.prepare import prepare_dataset, summarize, validate_dataset
from ftagent.tools.data.report import DataReport
from ftagent.tools.data.rows import DataError, PrepareOptions

__all__ = [
    "DataError",
    "DataReport",
    "PrepareOptions",
    "prepare_dataset",
    "summarize",
    "validate_dataset",
]
