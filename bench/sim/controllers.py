"""The two autoscalers under test, driving a simulated `Cluster`.

`Operator` calls the operator's real `decide` (imported, not copied). `KedaHpa` models
KEDA's Redis list scaler with the HPA it creates, at their default settings:

* KEDA's operator polls every 30 s: a non-empty list activates (0 -> 1 replica); a list
  empty since `cooldownPeriod` (300 s) at a poll deactivates (-> 0 replicas).
* The HPA (minReplicas 1) syncs every 15 s while replicas > 0, reading the list length
  through KEDA's metrics server (a fresh LLEN per request): AverageValue target, so
  desired = ceil(length / listLength), skipped within the 10% tolerance. Pending only:
  running jobs are invisible to it.
* autoscaling/v2 default behavior: up at most max(+100%, +4 pods) per 15 s period
  (net of the period's events); down to the highest recommendation of the last 300 s.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field

from taskqueue_operator.api.models import ScalingSpec
from taskqueue_operator.scaling.policy import ScalerState, decide

from sim.cluster import ACTUATE, EPOCH, Cluster

BUSY_POD_DELETION_COST = 1000  # what the operator annotates busy pods with (idle: 0)


@dataclass
class Operator:
    """Our operator's loop: observe, `decide`, mark busy pods, patch replicas."""

    cluster: Cluster
    spec: ScalingSpec
    tick: float = 1.0
    lag: float = 0.2
    """Seconds from the decision to the ReplicaSet creating or removing pods (the patch,
    the Deployment and ReplicaSet controllers: tens of ms each on the real node)."""
    replicas: int = 0
    """The Deployment's replicas as the operator sees them (it updates its cache on patch)."""
    state: ScalerState = field(default_factory=ScalerState)
    modes: dict[str, int] = field(default_factory=dict)
    """Ticks per decision mode (backlog / queue-time)."""

    def start(self, offset: float = 0.0) -> None:
        self.cluster.every(self.tick, offset, self.step)

    def step(self) -> None:
        cluster = self.cluster
        observation = cluster.observe()
        starts = cluster.pod_starts[-20:]  # what reconcile/pod_start.py keeps
        decision = decide(
            self.spec,
            observation,
            self.replicas,
            self.state,
            EPOCH + cluster.now,
            pod_start=statistics.median(starts) if starts else None,
        )
        self.state = decision.state
        self.modes[decision.mode] = self.modes.get(decision.mode, 0) + 1
        if not decision.changed:
            return
        if decision.replicas < self.replicas and self.spec.protect_busy_workers:
            busy = observation.busy_pods()
            for pod in cluster.pods.values():
                pod.deletion_cost = BUSY_POD_DELETION_COST if pod.name in busy else 0
        self.replicas = decision.replicas
        replicas = decision.replicas
        cluster.at(cluster.now + self.lag, lambda: cluster.scale(replicas), ACTUATE)


@dataclass
class PlainFormula:
    """The textbook rule, ceil((pending + running) / target) every tick, with our
    scale-down stabilization and warm shutdown: the operator's old default."""

    cluster: Cluster
    target: int
    max_replicas: int
    scale_down_delay: float = 60.0
    tick: float = 1.0
    lag: float = 0.2
    replicas: int = 0
    recent: list[tuple[float, int]] = field(default_factory=list)

    def start(self, offset: float = 0.0) -> None:
        self.cluster.every(self.tick, offset, self.step)

    def step(self) -> None:
        cluster = self.cluster
        now = cluster.now
        load = len(cluster.queue) + cluster.running
        wanted = min(self.max_replicas, math.ceil(load / self.target))
        self.recent = [(t, r) for t, r in self.recent if t > now - self.scale_down_delay]
        self.recent.append((now, wanted))
        replicas = max(r for _, r in self.recent) if wanted < self.replicas else wanted
        if replicas == self.replicas:
            return
        busy = cluster.observe().busy_pods()
        for pod in cluster.pods.values():
            pod.deletion_cost = BUSY_POD_DELETION_COST if pod.name in busy else 0
        self.replicas = replicas
        cluster.at(now + self.lag, lambda: cluster.scale(replicas), ACTUATE)


@dataclass
class KedaHpa:
    cluster: Cluster
    list_length: int
    max_replicas: int
    polling_interval: float = 30.0
    cooldown: float = 300.0
    sync_period: float = 15.0
    tolerance: float = 0.1
    down_window: float = 300.0
    up_pods: int = 4
    up_percent: int = 100
    up_period: float = 15.0
    hpa_min_replicas: int = 1  # KEDA's HPA: max(minReplicaCount, 1); KEDA owns 0 <-> 1
    replicas: int = 0
    last_active: float | None = None
    recommendations: list[tuple[float, int]] = field(default_factory=list)
    events: list[tuple[float, int]] = field(default_factory=list)
    """HPA scale events (time, change) for the rate limits."""

    def start(self, poll_offset: float, sync_offset: float) -> None:
        self.cluster.every(self.polling_interval, poll_offset, self.poll)
        self.cluster.every(self.sync_period, sync_offset, self.sync)

    def _set(self, replicas: int) -> None:
        self.replicas = replicas
        self.cluster.scale(replicas)

    def poll(self) -> None:
        """KEDA's operator loop: activation and scale to zero only."""
        now = self.cluster.now
        if self.cluster.queue:  # activationListLength 0: active when length > 0
            self.last_active = now
            if self.replicas == 0:
                self._set(1)
        elif (
            self.replicas > 0
            and self.last_active is not None
            and now - self.last_active >= self.cooldown
        ):
            self._set(0)

    def sync(self) -> None:
        """One HPA reconcile."""
        current = self.replicas
        if current == 0:
            return  # scaling disabled at zero replicas; KEDA activates
        now = self.cluster.now
        length = len(self.cluster.queue)
        metric_desired = current
        if abs(1.0 - length / (self.list_length * current)) > self.tolerance:
            metric_desired = math.ceil(length / self.list_length)

        # Stabilization: up window 0 s, down window 300 s (max of recent recommendations).
        cutoff = now - self.down_window
        self.recommendations = [(t, r) for t, r in self.recommendations if t > cutoff]
        highest = max([metric_desired, *(r for _, r in self.recommendations)])
        self.recommendations.append((now, metric_desired))
        stabilized = min(current, highest)
        stabilized = max(stabilized, metric_desired)

        # Rate limits relative to the replicas at the start of the period.
        added = sum(d for t, d in self.events if t > now - self.up_period and d > 0)
        removed = -sum(d for t, d in self.events if t > now - self.up_period and d < 0)
        start = current - added + removed
        up_limit = max(start + self.up_pods, math.ceil(start * (1 + self.up_percent / 100)))
        up_limit = max(up_limit, current)
        desired = min(stabilized, self.max_replicas, up_limit)
        desired = max(desired, self.hpa_min_replicas)
        if desired != current:
            self.events.append((now, desired - current))
            self.events = [(t, d) for t, d in self.events if t > now - self.up_period]
            self._set(desired)
