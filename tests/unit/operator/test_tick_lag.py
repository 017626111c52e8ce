"""taskqueue_tick_lag_seconds: how late a scheduled tick starts, and only scheduled ones."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Histogram
from taskqueue_operator import metrics


def histogram() -> tuple[Histogram, CollectorRegistry]:
    registry = CollectorRegistry()
    return Histogram("lag_seconds", "test", buckets=(0.01, 0.1, 1.0), registry=registry), registry


def test_a_late_tick_is_observed_with_its_lag() -> None:
    lag, registry = histogram()
    schedule = metrics.TickLag(lag)
    schedule.sleeping_until(100.0)
    assert schedule.started(100.25) == 0.25
    assert registry.get_sample_value("lag_seconds_count") == 1
    assert registry.get_sample_value("lag_seconds_sum") == 0.25
    assert registry.get_sample_value("lag_seconds_bucket", {"le": "0.1"}) == 0
    assert registry.get_sample_value("lag_seconds_bucket", {"le": "1.0"}) == 1


def test_an_early_start_counts_as_on_time() -> None:
    lag, registry = histogram()
    schedule = metrics.TickLag(lag)
    schedule.sleeping_until(100.0)
    assert schedule.started(99.999) == 0.0
    assert registry.get_sample_value("lag_seconds_bucket", {"le": "0.01"}) == 1


def test_ticks_woken_by_an_event_or_the_first_have_no_due_time() -> None:
    lag, registry = histogram()
    schedule = metrics.TickLag(lag)
    assert schedule.started(5.0) is None  # the loop's first tick
    schedule.sleeping_until(10.0)
    schedule.woken()  # a child's watch event woke the loop early
    assert schedule.started(7.0) is None
    assert registry.get_sample_value("lag_seconds_count") == 0


def test_a_due_time_is_used_once() -> None:
    lag, registry = histogram()
    schedule = metrics.TickLag(lag)
    schedule.sleeping_until(1.0)
    schedule.started(2.0)
    assert schedule.started(3.0) is None
    assert registry.get_sample_value("lag_seconds_count") == 1


def test_the_operator_exports_the_lag_and_duration_histograms() -> None:
    exported = {family.name for family in metrics.REGISTRY.collect()}
    assert {"taskqueue_tick_lag_seconds", "taskqueue_tick_duration_seconds"} <= exported
