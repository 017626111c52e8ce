"""Figures of the test bed: warm start, stop, and pod start latency.

`python -m testbed.measure [--starts 3] [--pods 10]` (PYTHONPATH=tests) starts the test
bed `--starts` times from cached binaries (start = until the Node is Ready), and in the
last one creates `--pods` pods one after another, timing each from the create call until a
watch sees it Running and Ready (a real container on the node).
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import kubernetes

from testbed.build import build
from testbed.cluster import Cluster, local_cluster
from testbed.processes import stop_pid

IMAGE = "ghcr.io/taskqueue-dev/taskqueue-worker:0.1.0"


def pod_latency(cluster: Cluster, name: str) -> float:
    core = kubernetes.client.CoreV1Api(cluster.api_client())
    body = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {"name": "main", "image": IMAGE, "command": ["sleep", "600"]},
            ],
        },
    }
    watcher = kubernetes.watch.Watch()
    started = time.monotonic()
    core.create_namespaced_pod("default", body)
    for event in watcher.stream(
        core.list_namespaced_pod,
        "default",
        field_selector=f"metadata.name={name}",
        timeout_seconds=60,
    ):
        pod = event["object"]
        ready = {c.type: c.status for c in pod.status.conditions or []}.get("Ready")
        if pod.status.phase == "Running" and ready == "True":
            watcher.stop()
            return time.monotonic() - started
    raise TimeoutError(f"{name} not Running and Ready in 60 s")


def summary(name: str, values: list[float]) -> str:
    return (
        f"{name}: median {statistics.median(values):.3f}s, min {min(values):.3f}s, "
        f"max {max(values):.3f}s (n={len(values)})"
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--starts", type=int, default=3)
    parser.add_argument("--pods", type=int, default=10)
    options = parser.parse_args(argv)
    build()  # cached: the start figures must not include a build
    starts: list[float] = []
    stops: list[float] = []
    latencies: list[float] = []
    for attempt in range(options.starts):
        state = Path(tempfile.mkdtemp(prefix="tq-measure-"))
        began = time.monotonic()
        cluster, process = local_cluster(state)
        starts.append(time.monotonic() - began)
        try:
            if attempt == options.starts - 1:
                core = kubernetes.client.CoreV1Api(cluster.api_client())
                deadline = time.monotonic() + 60  # the default ServiceAccount comes first
                while not core.list_namespaced_service_account("default").items:
                    if time.monotonic() > deadline:
                        raise TimeoutError("no default ServiceAccount")
                    time.sleep(0.1)
                latencies = [pod_latency(cluster, f"p{i}") for i in range(options.pods)]
        finally:
            began = time.monotonic()
            stop_pid(process.pid)
            stops.append(time.monotonic() - began)
            shutil.rmtree(state, ignore_errors=True)
    print(summary("warm start (until the Node is Ready)", starts))
    print(summary("stop", stops))
    if latencies:
        print(summary("pod create -> Running+Ready", latencies))
    return 0


if __name__ == "__main__":
    sys.exit(main())
