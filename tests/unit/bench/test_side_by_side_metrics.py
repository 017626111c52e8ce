"""The side-by-side figures (bench/sidebyside): what each number counts."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[3] / "bench"))

from sidebyside.metrics import JobOutcome, Sample, figures, worker_seconds
from sidebyside.replays import REPLAYS, event_onset, jobs


def test_worker_seconds_hold_each_sample_until_the_next_and_stop_at_the_horizon() -> None:
    samples = [Sample(0, 0, 0, 0), Sample(10, 2, 2, 5), Sample(15, 1, 1, 0), Sample(30, 0, 0, 0)]
    assert worker_seconds(samples, horizon=40) == 2 * 5 + 1 * 15
    assert worker_seconds(samples, horizon=20) == 2 * 5 + 1 * 5


def test_zero_to_one_counts_from_the_first_job_and_one_to_n_from_the_load_event() -> None:
    samples = [Sample(0, 0, 0, 0), Sample(4, 0, 0, 3), Sample(31, 1, 0, 3), Sample(46, 3, 1, 2)]
    outcomes = [JobOutcome(3.0, 40.0, True, False), JobOutcome(35.0, 50.0, True, False)]
    result = figures(samples, outcomes, horizon=60, event=35.0)
    assert result.zero_to_one == 31 - 3
    assert result.one_to_n == 46 - 35
    assert result.peak == 3
    assert result.wait_max == 40.0 - 3.0


def test_a_job_that_never_started_counts_with_the_wait_it_had_at_the_end() -> None:
    outcomes = [JobOutcome(0.0, 1.0, True, False), JobOutcome(10.0, None, False, False)]
    result = figures([Sample(0, 1, 1, 0)], outcomes, horizon=100, event=0)
    assert result.unstarted == 1
    assert result.wait_max == 90.0
    assert result.zero_to_one is None  # it was not at zero when the first job came


def test_lost_jobs_are_the_interrupted_ones_that_never_finished() -> None:
    outcomes = [
        JobOutcome(0.0, 1.0, True, True),  # requeued after its worker vanished, then done
        JobOutcome(0.0, 2.0, False, True),  # killed with its pod: failed or still 'started'
        JobOutcome(0.0, 3.0, True, False),
    ]
    result = figures([Sample(0, 0, 0, 0)], outcomes, horizon=10, event=0)
    assert (result.interrupted, result.lost, result.finished) == (2, 1, 2)


@pytest.mark.parametrize("name", sorted(REPLAYS))
def test_each_replay_is_a_window_of_its_committed_trace(name: str) -> None:
    replay = REPLAYS[name]
    played = jobs(replay)
    assert played, name
    offsets = [offset for offset, _ in played]
    assert offsets == sorted(offsets)
    assert offsets[0] >= 0 and offsets[-1] < replay.length
    assert replay.event <= event_onset(replay) < replay.event + 5  # the event is where said


def test_one_replay_has_jobs_longer_than_the_default_grace_period() -> None:
    assert any(service > 30 for _, service in jobs(REPLAYS["batch"]))
    assert all(service < 360 for _, service in jobs(REPLAYS["batch"]))  # jobTimeout default


def test_one_replay_drains_for_longer_than_the_hpa_scale_down_window() -> None:
    """batch-long: at maxReplicas 10 its work takes more than 300 s (the HPA's window)
    after the queue has started to shrink, nearly every job longer than the 30 s grace period
    and all under the jobTimeout default."""
    played = [service for _, service in jobs(REPLAYS["batch-long"])]
    assert sum(played) / 10 > 300
    assert sum(service > 30 for service in played) >= 0.9 * len(played)
    assert max(played) < 360
    assert (REPLAYS["batch-long"].tail or 0) > 300
