"""Issue 16 part 4: the real KEDA runs on the test bed (so the side-by-side benchmark,
`make bench-keda`, cannot rot): its operator and metrics adapter as host processes
(testbed.keda_run), the aggregation layer serving external.metrics.k8s.io, and the HPA
controller of kube-controller-manager. A ScaledObject with KEDA's redis trigger on RQ's
list becomes Ready and scales a worker Deployment from 0 to 1 when a job is pushed."""

from __future__ import annotations

import json
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from e2e_helpers import Kubectl, make_secret, queue_of, wait_for
from keda_manifests import keda_worker_deployment, scaled_object
from rq import Queue
from testbed.build import find_go
from testbed.cluster import Cluster
from testbed.keda_build import keda_bin_dir, keda_outdated, keda_version
from testbed.keda_run import API_SERVICE, Keda
from testbed.redis_server import RedisServer

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

NOOP = "taskqueue_worker.examples.noop"


@pytest.fixture(scope="module")
def keda(cluster: Cluster) -> Iterator[Keda]:
    if cluster.state_dir is None:
        pytest.skip(
            "KEDA is started by the test bed only (host processes next to its API server); "
            "on a cluster of your own, install KEDA and run `make bench-keda` there"
        )
    if keda_outdated():
        try:
            find_go()
        except RuntimeError as error:
            pytest.skip(f"KEDA {keda_version()} cannot be built here: {error}")
        pytest.skip(
            f"KEDA {keda_version()} is not built in {keda_bin_dir()}: `make binaries` builds "
            "it (about 20 minutes on 2 cores, then cached)"
        )
    keda = Keda(cluster).start()
    try:
        yield keda
    finally:
        keda.stop()


def test_scaled_object_becomes_ready_and_scales_a_deployment_from_zero_to_one(
    cluster: Cluster, kube: Kubectl, keda: Keda, redis_server: RedisServer
) -> None:
    queue = queue_of(kube, "-keda")
    try:
        make_secret(kube, "redis-url", redis_server.pod_url)
        kube.apply(keda_worker_deployment("rq", kube.namespace, queue, "redis-url"))
        address = urlsplit(redis_server.pod_url).netloc
        kube.apply(scaled_object("rq", "rq-workers", address, queue, max_replicas=2))

        def ready() -> dict[str, str]:
            body = kube.get("scaledobject", "rq") or {}
            return {
                c["type"]: c["status"] for c in (body.get("status") or {}).get("conditions", [])
            }

        wait_for(lambda: ready().get("Ready") == "True", 60, 0.5, "ScaledObject Ready")
        hpa = wait_for(lambda: kube.get("hpa", "keda-hpa-rq"), 30, 0.5, "KEDA's HPA")
        assert hpa["spec"]["metrics"][0]["type"] == "External", hpa["spec"]
        assert ready().get("Active") != "True", ready()  # nothing pending yet

        Queue(queue, connection=redis_server.client()).enqueue(NOOP)
        # KEDA's default pollingInterval (30 s) bounds how long the first job waits.
        wait_for(
            lambda: (
                (kube.get("deployment", "rq-workers") or {}).get("spec", {}).get("replicas") == 1
            ),
            90,
            0.5,
            "KEDA scaling rq-workers 0 -> 1",
        )
        # The external metric is served through the aggregation layer, as the HPA reads it.
        metric = hpa["spec"]["metrics"][0]["external"]["metric"]
        selector = ",".join(f"{k}={v}" for k, v in metric["selector"]["matchLabels"].items())
        path = f"/apis/external.metrics.k8s.io/v1beta1/namespaces/{kube.namespace}/{metric['name']}"
        served = json.loads(
            cluster.kubectl("get", "--raw", f"{path}?labelSelector={selector}").stdout
        )
        assert served["items"] and served["items"][0]["metricName"] == metric["name"], served
        assert cluster.kubectl("get", "apiservice", API_SERVICE).returncode == 0
    finally:
        # KEDA's finalizer on the ScaledObject needs KEDA: remove it while KEDA runs, or
        # the namespace stays Terminating.
        kube.run("delete", "scaledobject", "--all", "--timeout=60s", check=False)
