"""Datasets: read (`readers`), detect the schema (`schema`), check each row (`rows`,
`checks`) and the whole set (`dataset_checks`, near-duplicates in `neardup`), fix on a copy
and split (`prepare`, `splits`), validate without preparing (`validate`), count tokens
(`tokens`), describe (`facts`, `report`), and add the safety mix (`safety_mix`). No agent,
no UI.
"""

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
