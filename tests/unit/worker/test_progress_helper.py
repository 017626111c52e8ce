"""Progress helper outside a job (inside one: tests/integration/worker)."""

from __future__ import annotations

import math

import pytest
from taskqueue_worker.progress import set_progress, track


def test_outside_a_job_progress_is_a_no_op() -> None:
    assert set_progress(0.5) is False


def test_nan_is_refused() -> None:
    with pytest.raises(ValueError):
        set_progress(math.nan)


def test_track_yields_every_item() -> None:
    assert list(track(range(5))) == [0, 1, 2, 3, 4]
    assert list(track(iter("abc"))) == ["a", "b", "c"]
    assert list(track([])) == []
