"""A table-returning task that opts into Parquet storage with the decorator."""

from __future__ import annotations

import pandas as pd

from taskqueue_worker.progress import track
from taskqueue_worker.results import parquet_result


@parquet_result
def make_table(rows: int = 10) -> pd.DataFrame:
    """A deterministic ``rows``-row table, stored as ``<job_id>.parquet`` when run
    as a job (location: ``TASKQUEUE_RESULT_URI``)."""
    values = [i * i for i in track(range(rows))]
    return pd.DataFrame({"i": range(rows), "square": values})
