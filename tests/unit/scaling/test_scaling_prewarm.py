"""A schedule's pre-warm is a floor on the policy's demand, under its clamp and window."""

from __future__ import annotations

from scaling_helpers import T0, obs, spec
from taskqueue_operator.scaling.policy import ScalerState, decide

WHY = "pre-warm for schedule ingest at 09:00:00 UTC"


def test_the_prewarm_raises_an_idle_pool_from_zero_and_says_why() -> None:
    decision = decide(spec(), obs(), 0, ScalerState(), T0, prewarm=2, prewarm_reason=WHY)
    assert decision.replicas == 2 and decision.demand == 2
    assert decision.mode == "prewarm"
    assert WHY in decision.reason and "scale up 0 -> 2" in decision.reason


def test_the_prewarm_is_a_floor_not_an_addition() -> None:
    busy = obs(0, 5)
    decision = decide(spec(), busy, 5, ScalerState(), T0, prewarm=2, prewarm_reason=WHY)
    assert decision.replicas == 5 and decision.mode != "prewarm"
    assert WHY not in decision.reason


def test_the_prewarm_is_clamped_by_max_replicas() -> None:
    decision = decide(spec(max_replicas=3), obs(), 0, ScalerState(), T0, prewarm=5)
    assert decision.replicas == 3
    assert decision.limited == "at maxReplicas 3"


def test_the_prewarmed_workers_leave_after_the_scale_down_delay() -> None:
    scaling = spec(scale_down_delay="10s")
    up = decide(scaling, obs(), 0, ScalerState(), T0, prewarm=1, prewarm_reason=WHY)
    closed = decide(scaling, obs(time=T0 + 5), 1, up.state, T0 + 5)  # the window closed
    held = decide(scaling, obs(time=T0 + 14), 1, closed.state, T0 + 14)
    assert held.replicas == 1, "within the delay of the window's end"
    gone = decide(scaling, obs(time=T0 + 15.5), 1, held.state, T0 + 15.5)
    assert gone.replicas == 0
