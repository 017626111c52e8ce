"""`taskqueue-operator-check`: is the operator's Deployment available? (the helm test)."""

from __future__ import annotations

import argparse
import sys
import time

import kubernetes

from taskqueue_operator.adapters.kube import load_config


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="taskqueue-operator-check")
    parser.add_argument("--namespace", required=True)
    parser.add_argument("--deployment", required=True)
    parser.add_argument("--timeout", type=float, default=60.0)
    options = parser.parse_args(argv)
    load_config()
    apps = kubernetes.client.AppsV1Api()
    deadline = time.monotonic() + options.timeout
    last = "not checked"
    while time.monotonic() < deadline:
        try:
            deployment = apps.read_namespaced_deployment(options.deployment, options.namespace)
            want = deployment.spec.replicas or 0
            available = (deployment.status.available_replicas if deployment.status else None) or 0
            if want >= 1 and available >= want:
                print(f"operator {options.namespace}/{options.deployment} is available")
                return 0
            last = f"{available}/{want} replicas available"
        except kubernetes.client.exceptions.ApiException as error:
            last = f"API error {error.status}: {error.reason}"
        time.sleep(2)
    print(f"operator not ready after {options.timeout:.0f}s: {last}", file=sys.stderr)
    return 1


if __name__ == "__main__":
    sys.exit(main())
