"""Autoscaling policy simulation: our operator's policy vs KEDA + HPA, on the same traces.

    .venv/bin/python bench/policy_sim.py [--seed 7] [--max-replicas 30] [--target 5]
        [--queue-seconds 5] [--scale-down-delay 60s] [--start-delay 3] [--keda-grace 0]

Traces (bursty, diurnal, spike; see sim/traces.py) are read from bench/traces/*.parquet,
or generated with the seed and stored there when missing. Each runs through a
discrete-event model of one RQ queue (sim/cluster.py) under three autoscalers:

* ours-backlog: the operator's real `decide` (backlog mode), ticking every 1 s, its
  patches landing 1 s later; busy pods get a high pod-deletion-cost before a
  scale-down and warm-shut-down (the grace period covers the job).
* ours-queue-time: the same with `targetQueueSeconds` (Little's law + drain term).
* keda: KEDA's Redis list scaler + HPA at defaults (sim/controllers.py), the same
  target (listLength = targetBacklogPerWorker) and bounds. Its scale-down removes pods
  by the ReplicaSet's default ranking, busy ones included: their jobs are killed
  (after --keda-grace seconds if the job is not done by then) and retried 90 s later.

* fixed-max (a reference): max replicas, ready from t=0: the lowest waits the cap allows.

All pods are ready `--start-delay` seconds after creation and billed from creation.
Wait = start of the run that completed - arrival (a killed job's lost time included).
Prints per trace and policy: p50/p95/max wait, worker-seconds, jobs killed, and ratios to
KEDA (goal: p95 <= 0.2x at <= 0.8x the worker-seconds, none killed). Writes the table
to bench/out/policy_sim.parquet. Not a test: no asserts.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "operator"))

from sim import traces  # noqa: E402
from sim.cluster import Cluster  # noqa: E402
from sim.controllers import KedaHpa, Operator  # noqa: E402
from taskqueue_operator.api.models import ScalingSpec  # noqa: E402

POLICIES = ("ours-backlog", "ours-queue-time", "keda", "fixed-max")
TAIL = 1800.0  # simulated seconds after the last arrival: queues drain, pools reach zero


def simulate(
    policy: str, trace: pd.DataFrame, args: argparse.Namespace, rng: np.random.Generator
) -> dict[str, object]:
    keda = policy == "keda"
    cluster = Cluster(
        arrivals=trace["arrival"].to_numpy(),
        service=trace["service"].to_numpy(),
        start_delay=args.start_delay,
        warm_shutdown=not keda,
        grace=args.keda_grace,
    )
    modes: dict[str, int] = {}
    if policy == "fixed-max":  # reference: the whole allowed pool, ready from the start
        cluster.start_delay = 0.0
        cluster.at(0.0, lambda: cluster.scale(args.max_replicas))
    elif keda:
        hpa = KedaHpa(cluster, list_length=args.target, max_replicas=args.max_replicas)
        hpa.start(poll_offset=rng.uniform(0, 30), sync_offset=rng.uniform(0, 15))
    else:
        spec = ScalingSpec(
            min_replicas=0,
            max_replicas=args.max_replicas,
            target_backlog_per_worker=args.target,
            target_queue_seconds=args.queue_seconds if policy == "ours-queue-time" else None,
            scale_down_delay=args.scale_down_delay,
        )
        operator = Operator(cluster, spec)
        operator.start(offset=rng.uniform(0, 1))
        modes = operator.modes
    cluster.run_until(float(trace["arrival"].max()) + TAIL)

    waits = pd.Series(cluster.starts - trace["arrival"].to_numpy())
    timeline = pd.DataFrame(cluster.timeline, columns=["time", "replicas", "pending", "running"])
    return {
        "policy": policy,
        "jobs": len(trace),
        "unfinished": int(waits.isna().sum()),
        "p50_wait": waits.quantile(0.50),
        "p95_wait": waits.quantile(0.95),
        "max_wait": waits.max(),
        "worker_seconds": cluster.worker_seconds,
        "killed": cluster.killed,
        "work_seconds": float(trace["service"].sum()),
        "scale_changes": len(timeline),
        "peak_replicas": int(timeline["replicas"].max()) if len(timeline) else 0,
        "queue_time_ticks": modes.get("queue-time", 0),
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--traces", type=Path, default=HERE / "traces")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "policy_sim.parquet")
    parser.add_argument("--max-replicas", type=int, default=30)
    parser.add_argument("--target", type=int, default=5, help="jobs per worker (both)")
    parser.add_argument("--queue-seconds", type=float, default=5.0)
    parser.add_argument("--scale-down-delay", default="60s", help="ours (KEDA: 300 s)")
    parser.add_argument("--start-delay", type=float, default=3.0)
    parser.add_argument("--keda-grace", type=float, default=0.0)
    args = parser.parse_args()

    rows = []
    for name in traces.GENERATORS:
        trace = traces.load(name, args.traces, args.seed)
        for policy in POLICIES:
            # The same controller phases for every policy of a trace.
            rng = np.random.default_rng([args.seed, len(rows) // len(POLICIES)])
            rows.append({"trace": name, **simulate(policy, trace, args, rng)})
            print(f"  {name:8s} {policy:16s} done", file=sys.stderr, flush=True)

    table = pd.DataFrame(rows)
    keda = table[table["policy"] == "keda"].set_index("trace")
    table["p95_vs_keda"] = table["p95_wait"] / table["trace"].map(keda["p95_wait"])
    table["ws_vs_keda"] = table["worker_seconds"] / table["trace"].map(keda["worker_seconds"])
    table["goal"] = (
        (table["p95_vs_keda"] <= 0.2) & (table["ws_vs_keda"] <= 0.8) & (table["killed"] == 0)
    )
    for column in ("seed", "max_replicas", "target", "queue_seconds", "scale_down_delay"):
        table[column] = getattr(args, column)
    table["start_delay"], table["keda_grace"] = args.start_delay, args.keda_grace
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)

    print(
        f"seed {args.seed}; max {args.max_replicas} replicas, target {args.target} jobs/worker,"
        f" queue-time target {args.queue_seconds:g}s, our scale-down delay"
        f" {args.scale_down_delay}, pod start {args.start_delay:g}s, KEDA grace"
        f" {args.keda_grace:g}s"
    )
    shown = table[
        [
            "trace",
            "policy",
            "jobs",
            "p50_wait",
            "p95_wait",
            "max_wait",
            "worker_seconds",
            "killed",
            "peak_replicas",
            "p95_vs_keda",
            "ws_vs_keda",
            "goal",
        ]
    ].copy()
    shown["goal"] = shown["goal"].map({True: "met", False: "missed"}).astype(object)
    shown.loc[shown["policy"].isin(["keda", "fixed-max"]), "goal"] = "-"
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(
            shown.to_string(
                index=False,
                formatters={
                    "p50_wait": "{:.1f}s".format,
                    "p95_wait": "{:.1f}s".format,
                    "max_wait": "{:.1f}s".format,
                    "worker_seconds": "{:.0f}".format,
                    "p95_vs_keda": "{:.3f}x".format,
                    "ws_vs_keda": "{:.3f}x".format,
                },
            )
        )
    work = table.groupby("trace", sort=False)["work_seconds"].first()
    print(
        "fixed-max: a reference, not a policy: the whole pool from t=0 (the lowest waits max"
        " replicas allow). Busy worker-seconds (the floor): "
        + ", ".join(f"{name} {seconds:.0f}" for name, seconds in work.items())
    )
    unfinished = int(table["unfinished"].sum())
    if unfinished:
        print(f"WARNING: {unfinished} jobs never completed within the tail", file=sys.stderr)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
