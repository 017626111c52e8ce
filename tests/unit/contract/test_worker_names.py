from __future__ import annotations

import pytest
from taskqueue_contract.worker_names import slot_of, worker_name


def test_names_are_unique_per_start_never_the_pod_name_and_carry_the_slot() -> None:
    pod = "backtests-7d9f-abcde"
    names = {worker_name(pod, 3) for _ in range(200)}
    assert len(names) == 200
    for name in names:
        assert name != pod
        assert name.startswith(f"{pod}-3-")
        assert slot_of(name, pod) == 3


@pytest.mark.parametrize(
    ("name", "pod", "slot"),
    [
        ("web-1-2-0a1b2c3d", "web-1", 2),  # the pod's name has dashes and digits itself
        ("web-1-0a1b2c3d", "web-1", 0),  # a one-loop image of before: <pod>-<token>
        ("web-12-0a1b2c3d", "web-1", 0),  # another pod's prefix is not this pod's slot
        ("laptop-worker", "laptop", 0),  # named by someone else
        ("web-1-17-ff", "web-1", 17),
    ],
)
def test_slot_of_reads_the_slot_back_or_zero(name: str, pod: str, slot: int) -> None:
    assert slot_of(name, pod) == slot


def test_a_negative_slot_is_refused() -> None:
    with pytest.raises(ValueError, match=">= 0"):
        worker_name("pod", -1)
