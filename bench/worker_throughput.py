"""No-op jobs per second per worker process: taskqueue-worker vs plain `rq worker`.

    .venv/bin/python bench/worker_throughput.py [--jobs 1000] [--rounds 3] [--redis-url URL]

For each round and each configuration (interleaved, so machine noise hits all
alike): flush the database, enqueue `--jobs` no-op jobs with `enqueue_many`, run
one worker process in burst mode with the scheduler on, and measure

* jobs/s = jobs / (last job's ended_at - first job's started_at), which leaves
  out process start-up (imports, registration);
* Redis commands per job, from INFO's total_commands_processed.

Configurations: our entrypoint with each worker class, and `rq worker` with the
matching rq class (Worker forks per job, SimpleWorker runs in-process). Prints
medians, ranges and the ratios ours/rq and simple/fork. Not a test: no asserts.
Without --redis-url it starts its own redis-server (Debian's) on a free port.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rq import Queue
from rq.utils import utcparse
from taskqueue_contract.keys import Keys

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
QUEUE = "bench"
FUNCTION = "taskqueue_worker.examples.noop"


@dataclass
class Config:
    name: str
    command: list[str]
    samples: list[float] = field(default_factory=list)
    commands_per_job: list[float] = field(default_factory=list)


def configs(url: str) -> list[Config]:
    rq = [str(BIN / "rq"), "worker", "--burst", "--with-scheduler", "--url", url]
    ours = [str(BIN / "taskqueue-worker"), "--burst"]
    return [
        Config("taskqueue-worker fork", [*ours, "--worker-class", "fork", QUEUE]),
        Config("rq worker (Worker)", [*rq, QUEUE]),
        Config("taskqueue-worker simple", [*ours, "--worker-class", "simple", QUEUE]),
        Config("rq worker (SimpleWorker)", [*rq, "--worker-class", "rq.SimpleWorker", QUEUE]),
    ]


def run_once(config: Config, client: redis.Redis, url: str, jobs: int, tmp: Path) -> None:
    client.flushdb()
    queue = Queue(QUEUE, connection=client)
    job_ids: list[str] = []
    for start in range(0, jobs, 500):  # batches keep the pipeline small
        batch = [
            Queue.prepare_data(FUNCTION, result_ttl=3600) for _ in range(min(500, jobs - start))
        ]
        job_ids += [job.id for job in queue.enqueue_many(batch)]
    before = int(client.info("stats")["total_commands_processed"])
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TASKQUEUE_", "RQ_"))},
        "REDIS_URL": url,
        "POD_NAME": "bench",
        "TMPDIR": str(tmp),
    }
    process = subprocess.Popen(
        config.command,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        code = process.wait(timeout=max(120, jobs / 5))
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)  # pgid == the PID we started
        process.wait()
        raise SystemExit(f"{config.name}: did not drain {jobs} jobs in time") from None
    if code != 0:
        raise SystemExit(f"{config.name}: exited {code}")
    after = int(client.info("stats")["total_commands_processed"])

    with client.pipeline() as pipe:
        for job_id in job_ids:
            pipe.hmget(Keys().job(job_id), "started_at", "ended_at", "status")
        rows = pipe.execute()
    unfinished = [r for r in rows if r[2] != b"finished"]
    if unfinished:
        raise SystemExit(f"{config.name}: {len(unfinished)} jobs not finished")
    first = min(utcparse(r[0].decode()) for r in rows)
    last = max(utcparse(r[1].decode()) for r in rows)
    config.samples.append(jobs / (last - first).total_seconds())
    config.commands_per_job.append((after - before) / jobs)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--redis-url", default=None)
    args = parser.parse_args()

    server = None
    url = args.redis_url
    if url is None:
        sys.path.insert(0, str(ROOT / "tests"))
        from testbed.redis_server import RedisServer

        server = RedisServer().start()
        url = server.url
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"tq-bench-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    client = redis.Redis.from_url(url)
    table = configs(url)
    try:
        for round_ in range(args.rounds):
            order = table[round_ % len(table) :] + table[: round_ % len(table)]
            for config in order:
                run_once(config, client, url, args.jobs, tmp)
                print(
                    f"round {round_ + 1}: {config.name:26s} {config.samples[-1]:7.1f} jobs/s",
                    flush=True,
                )
    finally:
        client.close()
        if server is not None:
            server.cleanup()

    print()
    print(f"{args.jobs} no-op jobs per run, {args.rounds} rounds, one worker process, burst mode")
    print(f"{'configuration':26s} {'median jobs/s':>13s} {'range':>15s} {'cmds/job':>9s}")
    by_name = {c.name: c for c in table}
    for config in table:
        median = statistics.median(config.samples)
        spread = f"{min(config.samples):.1f}-{max(config.samples):.1f}"
        cmds = statistics.median(config.commands_per_job)
        print(f"{config.name:26s} {median:13.1f} {spread:>15s} {cmds:9.1f}")
    med = {name: statistics.median(c.samples) for name, c in by_name.items()}
    ratios = [
        ("taskqueue fork / rq Worker", "taskqueue-worker fork", "rq worker (Worker)"),
        (
            "taskqueue simple / rq SimpleWorker",
            "taskqueue-worker simple",
            "rq worker (SimpleWorker)",
        ),
        ("taskqueue simple / taskqueue fork", "taskqueue-worker simple", "taskqueue-worker fork"),
        ("rq SimpleWorker / rq Worker", "rq worker (SimpleWorker)", "rq worker (Worker)"),
    ]
    print()
    for label, top, bottom in ratios:
        print(f"ratio {label:36s} {med[top] / med[bottom]:.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
