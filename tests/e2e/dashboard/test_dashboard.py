"""The dashboard in headless Chromium against a live TaskQueue: charts, workers, DLQ."""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
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


def test_dashboard_renders_live_data(
    kube: Kubectl, operator_process: Any, redis_secret: str, redis_client: redis.Redis
) -> None:
    queue_name = f"d-{kube.namespace[-8:]}"
    queue = Queue(queue_name, connection=redis_client)
    failed = [
        queue.enqueue("taskqueue_worker.examples.fail", "shown in the DLQ").id for _ in range(2)
    ]
    SimpleWorker([queue], connection=redis_client).work(burst=True)
    for _ in range(6):
        queue.enqueue("taskqueue_worker.examples.sleep", 30, job_timeout=60)
    manifest = taskqueue_manifest(
        "dash",
        queues=[queue_name],
        scaling={"minReplicas": 0, "maxReplicas": 2, "targetBacklogPerWorker": 3},
    )
    manifest["spec"]["worker"]["jobTimeout"] = "60s"  # the jobs' own: it bounds every job's
    kube.apply(manifest)
    wait_for(lambda: redis_client.scard(f"rq:workers:{queue_name}") >= 1, 60, 0.5, "workers")
    wait_for(
        lambda: ((kube.get("taskqueue", "dash") or {}).get("status") or {}).get("running", 0) >= 1,
        30,
        0.5,
        "a running job",
    )
    url = f"http://127.0.0.1:{operator_process.dashboard_port}/"

    dom = chromium("--virtual-time-budget=8000", "--dump-dom", url).stdout
    section = dom[dom.find(f"{kube.namespace}/dash") :]
    assert section, dom[:2000]
    rendered = re.search(r'data-rendered="(\d+)"', dom)
    assert rendered and int(rendered.group(1)) >= 2, "the charts have points"
    pending = re.search(r'class="series-pending"[^>]*points="([^"]+)"', section)
    assert pending and len(pending.group(1).split()) >= 2
    assert 'class="scale-event"' in section, "the scaling decision is on the time axis"
    for job_id in failed:
        assert job_id in section, "the DLQ lists the failed jobs"
    assert re.search(r"Error: shown in the DLQ", section), "the exception summary is decoded"
    assert "dash-workers-" in section, "the workers table names the pods"

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    shot = chromium(
        "--virtual-time-budget=8000", "--window-size=1000,900", f"--screenshot={SCREENSHOT}", url
    )
    assert SCREENSHOT.exists() and SCREENSHOT.stat().st_size > 5000, shot.stderr[-500:]
    print(f"\ndashboard screenshot: {SCREENSHOT}")
