"""The dashboard against live TaskQueues, in headless Chromium and through its JSON: health
and conditions, per-queue counts, running jobs, dead letters, history across a restart."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import redis
from e2e_helpers import Kubectl, taskqueue_manifest, wait_for
from rq import Queue, SimpleWorker

pytestmark = pytest.mark.e2e
SCREENSHOT = Path(__file__).resolve().parents[3] / "bench" / "out" / "dashboard.png"


def chromium(*args: str) -> subprocess.CompletedProcess[str]:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    assert binary, "Debian's chromium package is needed (.ci/run installs it)"
    profile = tempfile.mkdtemp(prefix="tq-chromium-")
    try:
        return subprocess.run(
            [
                binary,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                f"--user-data-dir={profile}",
                *args,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        shutil.rmtree(profile, ignore_errors=True)


def dashboard_json(port: int) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/taskqueues", timeout=10) as reply:
        return json.loads(reply.read())


def view_of(port: int, namespace: str, name: str) -> dict[str, Any] | None:
    try:
        views = dashboard_json(port)
    except OSError:  # the operator is (re)starting
        return None
    return next((v for v in views if (v["namespace"], v["name"]) == (namespace, name)), None)


def test_dashboard_shows_health_queues_jobs_and_dead_letters_and_keeps_history(
    kube: Kubectl, operator_process: Any, redis_secret: str, redis_client: redis.Redis
) -> None:
    port = operator_process.dashboard_port
    queue_name = f"d-{kube.namespace[-8:]}"
    queue = Queue(queue_name, connection=redis_client)
    secret_url = "postgres://app:hunter22@db.internal/prices"
    failed = [
        queue.enqueue("taskqueue_worker.examples.fail", message=f"cannot reach {secret_url}").id
        for _ in range(2)
    ]
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    for _ in range(6):
        queue.enqueue("taskqueue_worker.examples.sleep", 40, job_timeout=60)
    manifest = taskqueue_manifest(
        "dash",
        queues=[queue_name],
        scaling={"minReplicas": 0, "maxReplicas": 2, "targetBacklogPerWorker": 3},
    )
    manifest["spec"]["worker"]["jobTimeout"] = "60s"  # the jobs' own: it bounds every job's
    kube.apply(manifest)
    broken = taskqueue_manifest("no-secret", queues=[queue_name])
    broken["spec"]["redis"] = {"urlFrom": {"secretKeyRef": {"name": "absent", "key": "url"}}}
    kube.apply(broken)

    def running_view() -> dict[str, Any] | None:
        view = view_of(port, kube.namespace, "dash")
        return view if view and view["running"]["jobs"] and len(view["history"]) >= 8 else None

    view = wait_for(running_view, 90, 0.5, "the dashboard to show a running job")

    # Health and conditions, as `kubectl get tq` and `kubectl describe` tell them.
    assert view["health"]["reason"], view["health"]
    types = {c["type"]: c for c in view["conditions"]}
    assert types["RedisReachable"]["status"] == "True", types
    assert {"Ready", "Reconciling", "Stalled"} <= set(types)
    # Per-queue counts and the throughput.
    (row,) = [q for q in view["queues"] if q["name"] == queue_name]
    assert row["failed"] == 2 and row["running"] >= 1 and 4 <= row["pending"] + row["running"] <= 6
    assert "finishedPerMinute" in view["summary"]
    # Running jobs: function, redacted call, pod, elapsed, progress.
    job = view["running"]["jobs"][0]
    assert job["function"] == "taskqueue_worker.examples.sleep"
    assert job["call"] == "taskqueue_worker.examples.sleep(40)"
    assert job["pod"].startswith("dash-workers-") and job["queue"] == queue_name
    assert job["elapsedSeconds"] is not None and job["elapsedSeconds"] >= 0
    # Dead letters: the total, the traceback, the URL's password nowhere.
    dead = view["deadLetters"]
    assert dead["total"] == 2 and {j["id"] for j in dead["jobs"]} == set(failed)
    letter = dead["jobs"][0]
    assert "Traceback" in letter["traceback"] and letter["exception"].startswith("RuntimeError")
    assert "postgres://app:***@db.internal/prices" in letter["call"]
    assert "hunter22" not in json.dumps(dead)
    # A TaskQueue whose Secret is missing says so (not "no observation yet").
    lost = wait_for(
        lambda: (v := view_of(port, kube.namespace, "no-secret")) and v["conditions"] and v,
        30,
        0.5,
        "the Secret-less TaskQueue's conditions",
    )
    assert lost["health"]["ready"] is False
    reachable = next(c for c in lost["conditions"] if c["type"] == "RedisReachable")
    assert reachable["reason"] == "SecretMissing" and "absent" in reachable["message"]

    url = f"http://127.0.0.1:{port}/"
    dom = chromium("--virtual-time-budget=8000", "--dump-dom", url).stdout
    section = dom[dom.find(f'data-taskqueue="{kube.namespace}/dash"') :]
    assert section, dom[:2000]
    rendered = re.search(r'data-rendered="(\d+)"', dom)
    assert rendered and int(rendered.group(1)) >= 8, "the charts have points"
    pending = re.search(r'class="series-pending"[^>]*points="([^"]+)"', section)
    assert pending and len(pending.group(1).split()) >= 2
    assert 'class="scale-event"' in section, "the scaling decision is on the time axis"
    assert re.search(r'class="time-label"[^>]*>\d\d:\d\d', section), "a clock on the time axis"
    assert 'class="conditions"' in section and "RedisReachable" in section
    assert '<tr class="condition"><td>Stalled</td><td>False' in section, "False is fine here"
    assert '<tr class="condition attention"><td>DeadLetters</td><td>True' in section
    assert f'data-queue="{queue_name}"' in section
    assert "taskqueue_worker.examples.sleep(40)" in section and "dash-workers-" in section
    assert "2 dead letters" in section
    for job_id in failed:
        assert job_id in section, "the DLQ lists the failed jobs"
    assert 'class="traceback"' in section and "RuntimeError: cannot reach" in section
    assert "hunter22" not in dom
    assert "SecretMissing" in dom[dom.find(f'data-taskqueue="{kube.namespace}/no-secret"') :]

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shot = chromium(
        "--virtual-time-budget=8000", "--window-size=1280,2200", f"--screenshot={SCREENSHOT}", url
    )
    assert SCREENSHOT.exists() and SCREENSHOT.stat().st_size > 5000, shot.stderr[-500:]
    print(f"\ndashboard screenshot: {SCREENSHOT}")

    # The history survives an operator restart: it is read back from Redis.
    before = view["history"][0]["t"]
    saved = redis_client.xlen(f"rq:taskqueue:dashboard:{kube.namespace}:dash")
    assert saved >= 1, "the timeline is saved in the TaskQueue's Redis"
    restarted_at = time.time()
    operator_process.restart()
    after = wait_for(
        lambda: (v := view_of(port, kube.namespace, "dash")) and v["history"] and v,
        60,
        0.5,
        "the dashboard after the restart",
    )
    older = [p for p in after["history"] if p["t"] < restarted_at]
    assert older and older[0]["t"] <= before + 6, (before, after["history"][:3])
    assert after["scaleEvents"] and after["scaleEvents"][0]["t"] < restarted_at
