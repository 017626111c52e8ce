"""Pod start: from the pod's first watch event to its first RQ worker's birth."""

from __future__ import annotations

from taskqueue_operator.observation import WorkerInfo
from taskqueue_operator.reconcile.pod_start import SAMPLES, PodStarts, measure
from taskqueue_operator.reconcile.status import pod_start_status

T = 1_800_000_000.0  # 2027-01-15T08:00:00Z


def stamp(seconds: float) -> str:
    from datetime import UTC, datetime

    return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def pod(created: float) -> dict:
    return {"metadata": {"creationTimestamp": stamp(int(created)).split(".")[0] + "Z"}}


def worker(name: str, pod_name: str, born: float) -> WorkerInfo:
    return WorkerInfo(name=name, state="idle", hostname=pod_name, birth=stamp(born))


def test_a_new_pod_is_measured_once_from_its_first_event_to_its_first_worker() -> None:
    pods = {"p1": pod(T + 0.7)}
    seen = {"p1": T + 0.71}
    starts = measure(PodStarts(), pods, seen, ())
    assert starts.samples == () and starts.done == frozenset(), "no worker yet"
    workers = (worker("w2", "p1", T + 2.9), worker("w1", "p1", T + 2.21))
    starts = measure(starts, pods, seen, workers)
    assert starts.samples == (1.5,), "the first worker of the pod, from when it was seen"
    again = measure(starts, pods, seen, workers)
    assert again.samples == (1.5,)
    assert pod_start_status(again).model_dump() == {
        "seconds": 1.5,
        "last_seconds": 1.5,
        "samples": 1,
    }


def test_pods_that_predate_the_watch_are_not_measured_and_gone_ones_forgotten() -> None:
    pods = {"old": pod(T - 3600), "new": pod(T)}
    seen = {"old": T, "new": T + 0.2}
    workers = (worker("a", "old", T + 1), worker("b", "new", T + 2.2), worker("c", None, T))
    starts = measure(PodStarts(), pods, seen, workers)
    assert starts.samples == (2.0,) and starts.done == {"old", "new"}
    assert measure(starts, {"new": pods["new"]}, seen, ()).done == {"new"}


def test_the_median_of_the_last_pods() -> None:
    starts = PodStarts()
    for index in range(SAMPLES + 5):
        name = f"p{index}"
        starts = measure(
            starts,
            {name: pod(T + index)},
            {name: T + index},
            (worker(name, name, T + index + 1 + index % 3),),
        )
    assert len(starts.samples) == SAMPLES and starts.median == 2.0
    assert pod_start_status(PodStarts()) is None
