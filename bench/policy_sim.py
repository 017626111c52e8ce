"""Autoscaling policy simulation: the operator's default policy against the floor, KEDA
and the plain formula, on the committed traces and on fresh seeded ones.

    .venv/bin/python bench/policy_sim.py [--seed 7] [--fresh-seeds 101,102,103]
        [--max-replicas 30] [--start-delay 1.3] [--start-sigma 0.25] [--keda-grace 0]

Traces (bursty, diurnal, spike, batch; see sim/traces.py): the committed ones in
bench/traces/*.parquet (made with --seed, regenerated when missing) and, for each of
--fresh-seeds, new ones generated in memory, so a policy is also judged on traces it
was never tuned on. Each runs through a discrete-event model of one RQ queue
(sim/cluster.py) under these autoscalers, all with the same bounds (0..max replicas):

* ours-default: the operator's real `decide` with nothing but the bounds written: the
  latency-first default (targetQueueSeconds 10 s, scaleDownDelay 2 s), ticking every 1 s,
  its patches acting 0.2 s later, busy pods marked with a deletion cost and warm-shut-down.
* ours-backlog-cap: the same with targetBacklogPerWorker 5 (the optional cap).
* previous-default: the operator's default before the latency default,
  ceil((pending + running) / 10) with a 60 s scale-down stabilization, busy pods kept.
* plain-formula: the same rule at 5 jobs per worker.
* keda: KEDA's Redis list scaler + HPA at their defaults (sim/controllers.py), listLength
  5. Its scale-down removes pods by the ReplicaSet's default ranking, busy ones
  included: their jobs are killed and retried 90 s later.
* floor: max replicas, ready from t=0: the lowest waits the cap allows (a reference).

Pod starts are log-normal around the real node's measured median (1.3 s); pods are
billed from creation. Wait = start of the run that completed - arrival. Per trace, seed
and policy: p50/p95/max wait, worker-seconds, the busy share (the work's seconds, the
least worker-seconds the work needs, over the worker-seconds spent), jobs killed, p95 over
the floor's p95. Goal for ours-default: p95 <= 1.2x the floor's (or within 1 s of it,
where the floor's is under 5 s: a ratio to ~0 means nothing), busy share >= 0.6, none
killed. Writes every row to bench/out/policy_sim.parquet. Not a test: no asserts.
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
from sim.controllers import KedaHpa, Operator, PlainFormula  # noqa: E402
from taskqueue_operator.api.models import ScalingSpec  # noqa: E402

POLICIES = (
    "ours-default",
    "ours-backlog-cap",
    "previous-default",
    "plain-formula",
    "keda",
    "floor",
)
BACKLOG = 5  # the backlog target of the cap, the plain formula and KEDA's listLength
PREVIOUS_BACKLOG = 10  # the operator's default before the latency default
TAIL = 1800.0  # simulated seconds after the last arrival: queues drain, pools reach zero
P95_RATIO_GOAL, P95_SLACK, SHARE_GOAL = 1.2, 1.0, 0.6


def simulate(
    policy: str, trace: pd.DataFrame, args: argparse.Namespace, rng: np.random.Generator
) -> dict[str, object]:
    keda = policy == "keda"
    cluster = Cluster(
        arrivals=trace["arrival"].to_numpy(),
        service=trace["service"].to_numpy(),
        start_delay=args.start_delay,
        start_sigma=args.start_sigma,
        seed=int(rng.integers(2**32)),
        warm_shutdown=not keda,
        grace=args.keda_grace,
    )
    modes: dict[str, int] = {}
    if policy == "floor":
        cluster.start_delay = 0.0
        cluster.at(0.0, lambda: cluster.scale(args.max_replicas))
    elif keda:
        hpa = KedaHpa(cluster, list_length=BACKLOG, max_replicas=args.max_replicas)
        hpa.start(poll_offset=rng.uniform(0, 30), sync_offset=rng.uniform(0, 15))
    elif policy in ("plain-formula", "previous-default"):
        target = BACKLOG if policy == "plain-formula" else PREVIOUS_BACKLOG
        PlainFormula(cluster, target, args.max_replicas).start(offset=rng.uniform(0, 1))
    else:
        cap = BACKLOG if policy == "ours-backlog-cap" else None
        spec = ScalingSpec(
            min_replicas=0, max_replicas=args.max_replicas, target_backlog_per_worker=cap
        )
        operator = Operator(cluster, spec)
        operator.start(offset=rng.uniform(0, 1))
        modes = operator.modes
    cluster.run_until(float(trace["arrival"].max()) + TAIL)

    waits = pd.Series(cluster.starts - trace["arrival"].to_numpy())
    timeline = pd.DataFrame(cluster.timeline, columns=["time", "replicas", "pending", "running"])
    work = float(trace["service"].sum())
    return {
        "policy": policy,
        "jobs": len(trace),
        "unfinished": int(waits.isna().sum()),
        "p50_wait": waits.quantile(0.50),
        "p95_wait": waits.quantile(0.95),
        "max_wait": waits.max(),
        "worker_seconds": cluster.worker_seconds,
        "work_seconds": work,
        "busy_share": work / cluster.worker_seconds if cluster.worker_seconds else 0.0,
        "killed": cluster.killed,
        "scale_changes": len(timeline),
        "peak_replicas": int(timeline["replicas"].max()) if len(timeline) else 0,
        "latency_ticks": modes.get("latency", 0),
    }


def _seeds(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def run_all(args: argparse.Namespace) -> pd.DataFrame:
    rows = []
    sets = [("committed", args.seed)] + [("fresh", seed) for seed in args.fresh_seeds]
    for origin, seed in sets:
        for name in traces.GENERATORS:
            if origin == "committed":
                trace = traces.load(name, args.traces, seed)
            else:
                trace = traces.generate(name, seed)
            for index, policy in enumerate(POLICIES):
                # The same controller phases for every policy of a trace.
                rng = np.random.default_rng([seed, sum(name.encode()), index])
                row = simulate(policy, trace, args, rng)
                rows.append({"trace": name, "seed": seed, "origin": origin, **row})
            print(f"  {origin} {name} seed {seed} done", file=sys.stderr, flush=True)
    table = pd.DataFrame(rows)
    key = ["trace", "seed"]
    floor = table[table["policy"] == "floor"].set_index(key)["p95_wait"]
    keda = table[table["policy"] == "keda"].set_index(key)
    index = pd.MultiIndex.from_frame(table[key])
    table["floor_p95"] = floor.reindex(index).to_numpy()
    table["p95_vs_floor"] = table["p95_wait"] / table["floor_p95"]
    table["p95_vs_keda"] = table["p95_wait"] / keda["p95_wait"].reindex(index).to_numpy()
    table["ws_vs_keda"] = table["worker_seconds"] / keda["worker_seconds"].reindex(index).to_numpy()
    wait_ok = (table["p95_wait"] <= P95_RATIO_GOAL * table["floor_p95"]) | (
        (table["floor_p95"] < 5.0) & (table["p95_wait"] <= table["floor_p95"] + P95_SLACK)
    )
    table["goal"] = wait_ok & (table["busy_share"] >= SHARE_GOAL) & (table["killed"] == 0)
    for column in ("max_replicas", "start_delay", "start_sigma", "keda_grace"):
        table[column] = getattr(args, column)
    return table


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--seed", type=int, default=7, help="of the committed traces")
    parser.add_argument("--fresh-seeds", type=_seeds, default=_seeds("101,102,103"))
    parser.add_argument("--traces", type=Path, default=HERE / "traces")
    parser.add_argument("--out", type=Path, default=HERE / "out" / "policy_sim.parquet")
    parser.add_argument("--max-replicas", type=int, default=30)
    parser.add_argument("--start-delay", type=float, default=1.3, help="median pod start, s")
    parser.add_argument("--start-sigma", type=float, default=0.25)
    parser.add_argument("--keda-grace", type=float, default=0.0)
    args = parser.parse_args()

    table = run_all(args)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_parquet(args.out, index=False)

    print(
        f"max {args.max_replicas} replicas; pod start median {args.start_delay:g}s"
        f" (sigma {args.start_sigma:g}); committed traces seed {args.seed}, fresh seeds"
        f" {','.join(map(str, args.fresh_seeds))}; backlog {BACKLOG} for the cap, the plain"
        " formula and KEDA"
    )
    shown = table[
        [
            "trace",
            "seed",
            "policy",
            "p50_wait",
            "p95_wait",
            "p95_vs_floor",
            "worker_seconds",
            "busy_share",
            "killed",
            "peak_replicas",
            "goal",
        ]
    ].copy()
    shown["goal"] = shown["goal"].map({True: "met", False: "missed"}).astype(object)
    shown.loc[shown["policy"] != "ours-default", "goal"] = "-"
    formats = {
        "p50_wait": "{:.1f}s".format,
        "p95_wait": "{:.1f}s".format,
        "p95_vs_floor": "{:.2f}x".format,
        "worker_seconds": "{:.0f}".format,
        "busy_share": "{:.2f}".format,
    }
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(shown.to_string(index=False, formatters=formats))
        summary = (
            table.groupby(["policy", "trace"], sort=False)
            .agg(
                p95_vs_floor_worst=("p95_vs_floor", "max"),
                p95_worst=("p95_wait", "max"),
                busy_share_worst=("busy_share", "min"),
                killed=("killed", "sum"),
            )
            .reset_index()
        )
        print("\nworst over the seeds:")
        print(
            summary.to_string(
                index=False,
                formatters={
                    "p95_vs_floor_worst": "{:.2f}x".format,
                    "p95_worst": "{:.1f}s".format,
                    "busy_share_worst": "{:.2f}".format,
                },
            )
        )
    ours = table[table["policy"] == "ours-default"]
    print(
        f"\nours-default meets the goal (p95 <= {P95_RATIO_GOAL}x the floor or within"
        f" {P95_SLACK:g}s of a floor under 5s, busy share >= {SHARE_GOAL}, none killed) on"
        f" {int(ours['goal'].sum())} of {len(ours)} traces"
    )
    unfinished = int(table["unfinished"].sum())
    if unfinished:
        print(f"WARNING: {unfinished} jobs never completed within the tail", file=sys.stderr)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
