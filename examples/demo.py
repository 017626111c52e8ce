"""`make demo`: the whole story on a local cluster with a real node, live, in a few minutes.

1. the test bed (control plane + a containerd node running this run's images) and a Redis
   on this machine, in front of which the demo puts a Service `redis`, so the manifests say
   `redis://redis.demo.svc:6379/0` as users write them (same for the candles API),
2. `helm install` of the operator chart (the operator runs as a pod from its image),
3. a TaskQueue with the seed teams' workloads (a daily candle ingest schedule, backtests),
   its Parquet data on a local PersistentVolume,
4. the schedule triggered by hand (as users do), then a burst of backtest jobs,
5. `kubectl get taskqueues` every second while worker pods scale up, drain and scale to
   zero,
6. where the Parquet results are, then cleanup (or not, with KEEP=1). Ctrl-C or SIGTERM
   also cleans up.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import redis
from rq import Queue

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from testbed.manifests import host_service, local_volume, object_list  # noqa: E402
from testbed.ports import free_port  # noqa: E402
from testbed.redis_server import RedisServer  # noqa: E402

TESTBED = ROOT / ".testbed"
NAMESPACE = "demo"
RELEASE = "taskqueue"
OPERATOR_NAMESPACE = "taskqueue-system"
SYMBOLS = ["KRW-BTC", "KRW-ETH", "KRW-XRP"]


def say(text: str) -> None:
    print(f"\n\033[1m==> {text}\033[0m", flush=True)


class Tools:
    def __init__(self) -> None:
        self.kubeconfig = TESTBED / "kubeconfig"
        self.kubectl_bin = TESTBED / "bin" / "kubectl"
        self.helm_bin = TESTBED / "bin" / "helm"

    def run(
        self, binary: Path, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        env = {**os.environ, "KUBECONFIG": str(self.kubeconfig)}
        done = subprocess.run(
            [str(binary), *args], input=input, capture_output=True, text=True, env=env
        )
        if check and done.returncode != 0:
            raise SystemExit(f"{binary.name} {' '.join(args)} failed:\n{done.stderr}")
        return done

    def kubectl(
        self, *args: str, input: str | None = None, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        return self.run(self.kubectl_bin, *args, input=input, check=check)

    def helm(self, *args: str) -> subprocess.CompletedProcess[str]:
        return self.run(self.helm_bin, *args)


def taskqueue(candles_url: str) -> dict[str, Any]:
    return {
        "apiVersion": "taskqueue.dev/v1alpha1",
        "kind": "TaskQueue",
        "metadata": {"name": "backtests", "namespace": NAMESPACE},
        "spec": {
            "redis": {"urlFrom": {"secretKeyRef": {"name": "redis-url", "key": "url"}}},
            "queues": ["high", "backtest-queue", "data_ingestion"],
            "worker": {
                "image": "ghcr.io/taskqueue-dev/taskqueue-worker:0.1.0",
                "jobTimeout": "120s",
                "workerClass": "simple",
                "env": [
                    {"name": "TASKQUEUE_DATA_ROOT", "value": "/data/candles"},
                    {"name": "TASKQUEUE_RESULT_URI", "value": "/data/results"},
                    {"name": "UPBIT_BASE_URL", "value": candles_url},
                ],
                "volumes": [
                    {"name": "data", "persistentVolumeClaim": {"claimName": "backtest-data"}}
                ],
                "volumeMounts": [{"name": "data", "mountPath": "/data"}],
            },
            "scaling": {
                "minReplicas": 0,
                "maxReplicas": 4,
                "targetBacklogPerWorker": 5,
                "scaleDownDelay": "10s",
            },
            "schedules": [
                {
                    "name": "daily-ingest",
                    "schedule": "0 9 * * *",
                    "timeZone": "UTC",
                    "function": "taskqueue_worker.examples.ingest_candles",
                    "kwargs": {"symbol": symbol, "timeframe": "1D", "days": 400},
                    "queue": "data_ingestion",
                }
                for symbol in SYMBOLS[:1]
            ],
        },
    }


def watch_table(tools: Tools, until: Any, timeout: float, label: str) -> None:
    """Print `kubectl get taskqueues` once a second until `until()` or the timeout."""
    deadline = time.monotonic() + timeout
    header_shown = False
    while time.monotonic() < deadline:
        lines = tools.kubectl("get", "taskqueues", "-n", NAMESPACE).stdout.splitlines()
        if not header_shown and lines:
            print(f"   {'TIME':>5}  {lines[0]}")
            header_shown = True
        for line in lines[1:]:
            print(f"   {time.strftime('%M:%S')}  {line}", flush=True)
        if until():
            return
        time.sleep(1)
    raise SystemExit(f"demo: {label} did not happen within {timeout:.0f}s")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--keep",
        action="store_true",
        default=os.environ.get("KEEP") == "1",
        help="leave the cluster, Redis and the operator running",
    )
    options = parser.parse_args(argv)
    # SIGTERM cleans up as Ctrl-C does (the finally below).
    signal.signal(signal.SIGTERM, lambda signum, _: (_ for _ in ()).throw(KeyboardInterrupt()))
    tools = Tools()
    work = Path(tempfile.mkdtemp(prefix="taskqueue-demo-"))
    data = work / "data"
    data.mkdir()
    data.chmod(0o777)  # the workers run as uid 10001
    data_root, results = data / "candles", data / "results"

    candles_port = free_port()
    candles: subprocess.Popen[bytes] | None = None
    redis_server: RedisServer | None = None
    try:
        say("Starting the test bed (control plane + a containerd node with this run's images)")
        subprocess.run(["make", "-s", "-C", str(ROOT), "testbed-up"], check=True)
        host = json.loads((TESTBED / "network.json").read_text())["host_ip"]
        redis_server = RedisServer(data_dir=work / "redis", pod_host=host).start()
        candles = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "taskqueue_worker.examples.candle_server",
                "--host",
                host,
                "--port",
                str(candles_port),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        candles_url = f"http://candles.{NAMESPACE}.svc:{candles_port}"
        print(f"   Redis on {host}:{redis_server.port}, candles API on {host}:{candles_port}")

        say("helm install the operator chart (the operator runs as a pod)")
        tools.helm(
            "upgrade",
            "--install",
            RELEASE,
            str(ROOT / "charts" / "taskqueue-operator"),
            "--namespace",
            OPERATOR_NAMESPACE,
            "--create-namespace",
            "--wait",
            "--timeout",
            "120s",
        )
        print(tools.kubectl("get", "pods", "-n", OPERATOR_NAMESPACE).stdout)

        say("A TaskQueue: workers on 3 queues, autoscaling 0..4, a daily ingest schedule")
        tools.kubectl("create", "namespace", NAMESPACE, check=False)
        url = f"redis://redis.{NAMESPACE}.svc:6379/0"
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "redis-url", "namespace": NAMESPACE},
            "data": {"url": base64.b64encode(url.encode()).decode()},
        }
        objects = [
            *host_service("redis", host, redis_server.port, 6379, NAMESPACE),
            *host_service("candles", host, candles_port, namespace=NAMESPACE),
            *local_volume("demo-data", str(data), "backtest-data", NAMESPACE),
            secret,
        ]
        tools.kubectl("apply", "-f", "-", input=json.dumps(object_list(objects)))
        print(f"   Secret redis-url: {url}; PersistentVolume demo-data at {data}")
        tools.kubectl("apply", "-f", "-", input=json.dumps(taskqueue(candles_url)))
        client = redis.Redis.from_url(redis_server.url)
        watch_table(
            tools,
            lambda: (
                tools.kubectl(
                    "get", "cronjob", "-n", NAMESPACE, "backtests-daily-ingest", check=False
                ).returncode
                == 0
            ),
            30,
            "the CronJob",
        )

        say("Trigger the ingest schedule by hand, and ingest the other symbols")
        tools.kubectl(
            "create", "job", "-n", NAMESPACE, "--from=cronjob/backtests-daily-ingest", "ingest-now"
        )
        ingest = Queue("data_ingestion", connection=client)
        for symbol in SYMBOLS[1:]:
            ingest.enqueue(
                "taskqueue_worker.examples.ingest_candles",
                symbol,
                timeframe="1D",
                days=400,
                job_timeout=120,
            )
        parquet = lambda: sorted(data_root.rglob("*.parquet"))  # noqa: E731
        watch_table(
            tools, lambda: len({p.parts[-3] for p in parquet()}) == len(SYMBOLS), 120, "the ingest"
        )
        print(f"   dataset: {len(parquet())} Parquet files under {data_root}")

        say("A burst of 40 backtests (EMA crossover, 3 symbols): watch the workers scale")
        backtests = Queue("backtest-queue", connection=client)
        jobs = [
            backtests.enqueue(
                "taskqueue_worker.examples.backtest",
                "ema_cross",
                SYMBOLS,
                "2025-06-01",
                "2026-06-01",
                params={"fast": 5 + i % 10, "slow": 30 + i},
                job_timeout=120,
            )
            for i in range(40)
        ]
        watch_table(
            tools,
            lambda: all(j.get_status(refresh=True) in ("finished", "failed") for j in jobs),
            240,
            "the drain",
        )
        failed = [j.id for j in jobs if j.get_status() == "failed"]
        print(f"   {len(jobs) - len(failed)} backtests finished, {len(failed)} failed")

        say("Scale down to zero after the 10 s stabilization")
        watch_table(
            tools,
            lambda: (
                tools.kubectl(
                    "get",
                    "deployment",
                    "-n",
                    NAMESPACE,
                    "backtests-workers",
                    "-o",
                    "jsonpath={.spec.replicas}",
                ).stdout
                == "0"
            ),
            90,
            "the scale-down",
        )

        say("Where the results are")
        files = sorted(results.rglob("*.parquet"))
        print(f"   {len(files)} result tables under {results} (one Parquet file per job)")
        print(
            tools.kubectl(
                "get",
                "events",
                "-n",
                NAMESPACE,
                "--field-selector",
                "involvedObject.kind=TaskQueue",
            ).stdout
        )
        if failed:
            return 1
    except KeyboardInterrupt:
        print("\ninterrupted: cleaning up")
        return 130
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C must not stop cleanup
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        if candles is not None:
            candles.terminate()
            candles.wait(timeout=10)
        if not options.keep:
            say("Cleaning up")
            tools.helm_bin.exists() and tools.run(
                tools.helm_bin, "uninstall", RELEASE, "-n", OPERATOR_NAMESPACE, check=False
            )
            if redis_server is not None:
                redis_server.cleanup()
            subprocess.run(["make", "-s", "-C", str(ROOT), "testbed-down"], check=False)
            shutil.rmtree(work, ignore_errors=True)
        elif redis_server is not None:
            pid = redis_server.process.pid if redis_server.process else "?"
            print(
                f"\nKEEP=1: the cluster stays up. export KUBECONFIG={tools.kubeconfig}; "
                f"Redis at {redis_server.url} (pid {pid}); stop Redis with `kill {pid}` "
                "and the cluster with `make testbed-down`."
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
