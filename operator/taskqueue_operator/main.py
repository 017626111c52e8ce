"""`taskqueue-operator`: kopf with our settings (peering off, liveness, namespaces)."""

from __future__ import annotations

import argparse
import logging
import os
import sys

import kopf


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="taskqueue-operator",
        description="Reconcile TaskQueue resources into RQ worker Deployments and CronJobs.",
    )
    parser.add_argument(
        "--namespace",
        "-n",
        action="append",
        default=[n for n in os.environ.get("WATCH_NAMESPACES", "").split(",") if n],
        help="watch only this namespace (repeatable; env WATCH_NAMESPACES, comma-separated); "
        "default: all namespaces",
    )
    parser.add_argument(
        "--liveness",
        default=os.environ.get("LIVENESS_ENDPOINT", "http://0.0.0.0:8080/healthz"),
        help="kopf liveness endpoint URL (empty to disable)",
    )
    parser.add_argument(
        "--peering",
        default=os.environ.get("PEERING_NAME", ""),
        help="kopf peering name for several replicas (default: standalone, no peering)",
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=int(os.environ.get("METRICS_PORT", "9090")),
        help="Prometheus /metrics port (0 disables)",
    )
    parser.add_argument(
        "--leader-election-namespace",
        default=os.environ.get("TASKQUEUE_LEADER_ELECTION_NAMESPACE", ""),
        help="run several replicas: only the holder of a Lease in this namespace acts",
    )
    parser.add_argument(
        "--dashboard-port",
        type=int,
        default=int(os.environ.get("TASKQUEUE_DASHBOARD_PORT", "0")),
        help="serve the read-only web dashboard on this port (0: off)",
    )
    parser.add_argument("--verbose", "-v", action="store_true")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    options = parse_args(argv)
    os.environ["TASKQUEUE_DASHBOARD_PORT"] = str(options.dashboard_port)
    if options.leader_election_namespace:  # read by the startup handler
        os.environ["TASKQUEUE_LEADER_ELECTION_NAMESPACE"] = options.leader_election_namespace
    import taskqueue_operator.handlers  # noqa: F401 - registers the kopf handlers
    from taskqueue_operator import metrics

    if options.metrics_port:
        metrics.serve(options.metrics_port)

    kopf.configure(verbose=options.verbose)
    if not options.verbose:
        # One line per watch event and handler is noise with hundreds of TaskQueues.
        logging.getLogger("kopf.objects").setLevel(logging.WARNING)
    kopf.run(
        standalone=not options.peering,
        peering_name=options.peering or None,
        clusterwide=not options.namespace,
        namespaces=options.namespace,
        liveness_endpoint=options.liveness or None,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
