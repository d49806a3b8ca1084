"""Dataset loading, validation and splitting (no agent, no UI)."""

from tools.data.load import DataError, load_examples
from tools.data.prepare import prepare_dataset, summarize

__all__ = ["DataError", "load_examples", "prepare_dataset", "summarize"]
