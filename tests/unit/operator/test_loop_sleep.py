"""How long a TaskQueue's loop sleeps between ticks."""

from __future__ import annotations

from taskqueue_operator.controller import sleep_seconds


def test_the_loop_sleeps_a_poll_or_until_the_plan_asks_to_be_woken() -> None:
    assert sleep_seconds(30.0, None, 100.0) == 30.0
    assert sleep_seconds(30.0, 107.5, 100.0) == 7.5, "a pre-warm window opens first"
    assert sleep_seconds(1.0, 107.5, 100.0) == 1.0
    assert sleep_seconds(30.0, 99.0, 100.0) == 0.0, "already due: at once"
