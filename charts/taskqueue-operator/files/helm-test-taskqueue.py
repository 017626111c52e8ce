"""`helm test`: reconcile a small TaskQueue end to end, then delete it.

Runs in the worker image (python, rq, redis; the Kubernetes API through the standard
library and the pod's ServiceAccount). Creates a TaskQueue with 1 fixed replica, waits for
its worker pod to be Ready and for its Ready condition, enqueues one job, waits for it to
finish, and deletes the TaskQueue whatever happened. One line per step, with its time.
Environment: TQ_NAMESPACE, TQ_NAME, TQ_QUEUE, TQ_WORKER_IMAGE, REDIS_URL, TQ_REDIS_SPEC
(the TaskQueue's spec.redis, JSON), TQ_TIMEOUT (seconds per step).
"""

import json
import os
import ssl
import sys
import time
import urllib.error
import urllib.request

ACCOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"
NAMESPACE = os.environ["TQ_NAMESPACE"]
NAME = os.environ["TQ_NAME"]
QUEUE = os.environ["TQ_QUEUE"]
TIMEOUT = float(os.environ.get("TQ_TIMEOUT", "180"))
API = f"https://{os.environ['KUBERNETES_SERVICE_HOST']}:{os.environ['KUBERNETES_SERVICE_PORT']}"
TASKQUEUES = f"{API}/apis/taskqueue.dev/v1alpha1/namespaces/{NAMESPACE}/taskqueues"
CONTEXT = ssl.create_default_context(cafile=f"{ACCOUNT}/ca.crt")
START = time.monotonic()


def say(message):
    print(f"[{time.monotonic() - START:6.1f}s] {message}", flush=True)


def call(method, url, body=None):
    with open(f"{ACCOUNT}/token") as token:
        headers = {"Authorization": f"Bearer {token.read().strip()}", "Accept": "application/json"}
    data = None
    if body is not None:
        data = json.dumps(body).encode()
        headers["Content-Type"] = "application/json"
    request = urllib.request.Request(url, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, context=CONTEXT, timeout=10) as reply:
            return json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError as error:
        detail = error.read().decode(errors="replace")[:500]
        raise RuntimeError(f"{method} {url}: HTTP {error.code}: {detail}") from None


def wait(what, check):
    deadline = time.monotonic() + TIMEOUT
    last = None
    while time.monotonic() < deadline:
        ok, last = check()
        if ok:
            say(f"{what}: {last}")
            return
        time.sleep(1)
    raise RuntimeError(f"timed out after {TIMEOUT:.0f}s waiting for {what} (last: {last})")


def worker_pod_ready():
    selector = f"taskqueue.dev/taskqueue={NAME},taskqueue.dev/component=worker"
    pods = call("GET", f"{API}/api/v1/namespaces/{NAMESPACE}/pods?labelSelector={selector}")
    for pod in pods.get("items", []):
        for entry in (pod.get("status") or {}).get("conditions") or []:
            if entry["type"] == "Ready" and entry["status"] == "True":
                return True, f"pod {pod['metadata']['name']} is Ready"
    return False, [p["status"].get("phase") for p in pods.get("items", [])]


def taskqueue_ready():
    body = call("GET", f"{TASKQUEUES}/{NAME}")
    for entry in (body.get("status") or {}).get("conditions") or []:
        if entry["type"] == "Ready":
            verdict = f"Ready={entry['status']} ({entry.get('reason')}: {entry.get('message')})"
            return entry["status"] == "True", verdict
    return False, "no Ready condition yet"


def main():
    from redis import Redis
    from rq import Queue

    manifest = {
        "apiVersion": "taskqueue.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": NAME, "labels": {"app.kubernetes.io/component": "helm-test"}},
        "spec": {
            "redis": json.loads(os.environ["TQ_REDIS_SPEC"]),
            "queues": [QUEUE],
            "replicas": 1,
            "worker": {"image": os.environ["TQ_WORKER_IMAGE"], "jobTimeout": "60s"},
        },
    }
    try:
        call("DELETE", f"{TASKQUEUES}/{NAME}")  # a previous run's, if it was cut short
        say(f"deleted a leftover TaskQueue {NAMESPACE}/{NAME}")
        time.sleep(2)
    except RuntimeError as error:
        if "HTTP 404" not in str(error):
            raise
    call("POST", TASKQUEUES, manifest)
    say(f"created TaskQueue {NAMESPACE}/{NAME} (1 replica, queue {QUEUE})")
    try:
        wait("worker pod", worker_pod_ready)
        wait("TaskQueue", taskqueue_ready)
        queue = Queue(QUEUE, connection=Redis.from_url(os.environ["REDIS_URL"]))
        job = queue.enqueue("taskqueue_worker.examples.noop", result_ttl=60)
        say(f"enqueued job {job.id}")

        def finished():
            status = job.get_status(refresh=True)
            return status == "finished", f"job {job.id} is {status}"

        wait("job", finished)
    finally:
        call("DELETE", f"{TASKQUEUES}/{NAME}")
        say(f"deleted TaskQueue {NAMESPACE}/{NAME}")
    say("OK: a TaskQueue was reconciled end to end")


if __name__ == "__main__":
    try:
        main()
    except Exception as error:
        say(f"FAILED: {error}")
        sys.exit(1)
