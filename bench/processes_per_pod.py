"""Work loops per pod (spec.worker.processes): memory per slot and jobs/s per pod, one pod
of N loops against N one-loop pods, N = 1, 4, 8, in one run.

    .venv/bin/python bench/processes_per_pod.py [--rounds 2] [--noop-jobs 150] [--io-jobs 40]

Each configuration is `taskqueue-worker` as the pods run it, as host processes: a pod's
process tree is the entrypoint and what it forks, and neither figure depends on the
kubelet (the container adds no process; no CPU limit is set, as a TaskQueue sets none
by default). Per round, configurations interleaved so machine noise hits all alike:

* memory: once every loop has registered (idle, before any job), the PSS and RSS of each
  pod's process tree (/proc/<pid>/smaps_rollup), summed over the pods, per slot. PSS
  splits shared pages between the processes sharing them: a pool's loops share what the
  supervisor imported before forking, separate pods share only the file-backed pages
  (the venv's shared libraries) that the page cache holds once;
* CPU weight: every pod runs in this benchmark's session, so all of them share one CPU
  weight (Linux's CFS autogroup is per session), as a pool's loops share their pod's. One
  more configuration gives 4 pods a session (a weight) each, as Kubernetes gives each pod
  a cgroup whose cpu.shares come from its requests: what that alone is worth to N pods
  over one pod of N loops with the same requests, on a contended machine;
* jobs/s: `--noop-jobs` x N no-op jobs (the queue's own cost: CPU) and `--io-jobs` x N
  jobs sleeping 50 ms (I/O-bound: what several loops per pod are for), from the first
  job's start to the last one's end (start-up left out).

Prints medians and the ratios pool/separate (1.0: a pod of N loops does what N pods do)
and N loops / 1 loop. Not a test: no asserts. Starts its own redis-server.
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import subprocess
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

import redis
from rq import Queue
from rq.utils import utcparse
from taskqueue_contract.keys import Keys

ROOT = Path(__file__).resolve().parents[1]
WORKER = str(Path(sys.executable).parent / "taskqueue-worker")
QUEUE = "bench"
IO_SECONDS = 0.05
KINDS = {
    "noop": ("taskqueue_worker.examples.noop", ()),
    "io": ("taskqueue_worker.examples.sleep", (IO_SECONDS,)),
}


@dataclass(frozen=True)
class Config:
    name: str
    loops: int
    pods: int
    processes: int
    """Loops per pod."""
    weight_per_pod: bool = False
    """Each pod in a session of its own, hence (Linux's CFS autogroups) a CPU weight of its
    own, as Kubernetes gives each pod a cgroup whose cpu.shares come from its requests.
    Otherwise every pod runs in this benchmark's session: one weight for all of them."""


@dataclass
class Figures:
    pss: list[float] = field(default_factory=list)
    rss: list[float] = field(default_factory=list)
    rate: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))


def configs() -> list[Config]:
    table = [Config("1 pod x 1 loop", 1, 1, 1)]
    for n in (4, 8):
        table.append(Config(f"1 pod x {n} loops", n, 1, n))
        table.append(Config(f"{n} pods x 1 loop", n, n, 1))
    table.append(Config("4 pods, weight each", 4, 4, 1, weight_per_pod=True))
    return table


def _children() -> dict[int, list[int]]:
    tree: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        tree[ppid].append(int(entry))
    return tree


def tree_memory(root: int) -> tuple[float, float]:
    """(PSS, RSS) in MiB of `root` and its descendants."""
    tree = _children()
    todo, pss, rss = [root], 0, 0
    while todo:
        pid = todo.pop()
        todo += tree.get(pid, [])
        try:
            lines = Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines()
        except OSError:
            continue
        fields = {line.split(":")[0]: int(line.split()[1]) for line in lines[1:] if ":" in line}
        pss += fields.get("Pss", 0)
        rss += fields.get("Rss", 0)
    return pss / 1024, rss / 1024


def start_pods(
    config: Config, url: str, tmp: Path, worker_class: str
) -> list[subprocess.Popen[bytes]]:
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith(("TASKQUEUE_", "RQ_"))},
        "REDIS_URL": url,
        "TMPDIR": str(tmp),
    }
    pods = []
    for index in range(config.pods):
        args = [WORKER, "--worker-class", worker_class]
        if config.processes > 1:
            args += ["--processes", str(config.processes)]
        pods.append(
            subprocess.Popen(
                [*args, QUEUE],
                env={**env, "POD_NAME": f"bench-{index}"},
                stdout=subprocess.DEVNULL,
                stderr=subprocess.DEVNULL,
                # Either way the pod leads its process group (pgid == pid: killpg).
                start_new_session=config.weight_per_pod,
                process_group=None if config.weight_per_pod else 0,
            )
        )
    return pods


def wait_registered(client: redis.Redis, loops: int, pods: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    while client.scard(Keys().workers) < loops:
        if time.monotonic() > deadline or any(p.poll() is not None for p in pods):
            raise SystemExit("the loops did not register")
        time.sleep(0.05)
    time.sleep(1.0)  # rq's scheduler process starts a moment after its loop registered


def wait_done(client: redis.Redis, job_ids: list[str], timeout: float) -> list[list[bytes]]:
    """The (started_at, ended_at, status) of every job, once all have finished."""
    deadline = time.monotonic() + timeout
    finished = Keys().finished(QUEUE)
    while client.zcard(finished) < len(job_ids):
        if time.monotonic() > deadline:
            raise SystemExit("the jobs did not finish in time")
        time.sleep(0.05)
    with client.pipeline() as pipe:
        for job_id in job_ids:
            pipe.hmget(Keys().job(job_id), "started_at", "ended_at", "status")
        rows: list[list[bytes]] = pipe.execute()
    return rows


def stop(pods: list[subprocess.Popen[bytes]]) -> None:
    """Warm shutdown of idle pods: they exit 0 within seconds."""
    for pod in pods:
        pod.send_signal(signal.SIGTERM)
    for pod in pods:
        try:
            code = pod.wait(timeout=30)
        except subprocess.TimeoutExpired:
            code = None
        if code != 0:
            raise SystemExit(f"a pod did not stop cleanly (exit {code})")


def run_once(
    config: Config,
    kind: str,
    jobs: int,
    client: redis.Redis,
    url: str,
    tmp: Path,
    fig: Figures,
    worker_class: str,
) -> float:
    client.flushdb()
    pods = start_pods(config, url, tmp, worker_class)
    try:
        wait_registered(client, config.loops, pods)
        if kind == "noop":  # registered and idle: the memory a slot costs
            memory = [tree_memory(pod.pid) for pod in pods]
            fig.pss.append(sum(m[0] for m in memory) / config.loops)
            fig.rss.append(sum(m[1] for m in memory) / config.loops)
        function, args = KINDS[kind]
        queue = Queue(QUEUE, connection=client)
        job_ids: list[str] = []
        for start in range(0, jobs, 500):
            batch = [
                Queue.prepare_data(function, args, result_ttl=3600)
                for _ in range(min(500, jobs - start))
            ]
            job_ids += [job.id for job in queue.enqueue_many(batch)]
        rows = wait_done(client, job_ids, timeout=max(120.0, jobs / 5))
        stop(pods)
    finally:
        for pod in pods:
            if pod.poll() is None:
                os.killpg(pod.pid, signal.SIGKILL)  # pgid == the PID we started
                pod.wait()
    if any(r[2] != b"finished" for r in rows):
        raise SystemExit(f"{config.name}: jobs left unfinished")
    first = min(utcparse(r[0].decode()) for r in rows)
    last = max(utcparse(r[1].decode()) for r in rows)
    rate = jobs / (last - first).total_seconds()
    fig.rate[kind].append(rate)
    return rate


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--noop-jobs", type=int, default=150, help="per loop")
    parser.add_argument("--io-jobs", type=int, default=40, help="per loop")
    parser.add_argument("--worker-class", choices=["fork", "simple"], default="fork")
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT / "tests"))
    from testbed.redis_server import RedisServer

    server = RedisServer().start()
    tmp = Path(os.environ.get("TMPDIR", "/tmp")) / f"tq-bench-procs-{os.getpid()}"
    tmp.mkdir(parents=True, exist_ok=True)
    client = redis.Redis.from_url(server.url)
    table = configs()
    figures = {c.name: Figures() for c in table}
    per_loop = {"noop": args.noop_jobs, "io": args.io_jobs}
    try:
        for round_ in range(args.rounds):
            order = table[round_ % len(table) :] + table[: round_ % len(table)]
            for config in order:
                for kind in KINDS:
                    rate = run_once(
                        config, kind, per_loop[kind] * config.loops, client, server.url, tmp,
                        figures[config.name], args.worker_class,
                    )  # fmt: skip
                    print(
                        f"round {round_ + 1}: {config.name:18s} {kind:5s} {rate:7.1f} jobs/s",
                        flush=True,
                    )
    finally:
        client.close()
        server.cleanup()

    med = {
        name: {
            "pss": statistics.median(f.pss),
            "rss": statistics.median(f.rss),
            **{kind: statistics.median(f.rate[kind]) for kind in KINDS},
        }
        for name, f in figures.items()
    }
    cores = os.cpu_count()
    print(
        f"\n{args.rounds} rounds, {cores} cores, host processes, {args.worker_class} worker class"
    )
    print(
        f"{'configuration':18s} {'PSS/slot MiB':>12s} {'RSS/slot MiB':>12s} "
        f"{'noop jobs/s':>11s} {'io jobs/s':>10s}"
    )
    for name, m in med.items():
        print(f"{name:18s} {m['pss']:12.1f} {m['rss']:12.1f} {m['noop']:11.1f} {m['io']:10.1f}")
    one = med["1 pod x 1 loop"]
    weighted = med["4 pods, weight each"]
    print()
    print(
        "4 pods with a CPU weight each / the same 4 pods sharing one weight: "
        f"noop jobs/s {weighted['noop'] / med['4 pods x 1 loop']['noop']:.2f}, "
        f"io {weighted['io'] / med['4 pods x 1 loop']['io']:.2f}"
    )
    for n in (4, 8):
        pool, separate = med[f"1 pod x {n} loops"], med[f"{n} pods x 1 loop"]
        print(
            f"N={n}: pool/separate PSS per slot {pool['pss'] / separate['pss']:.2f}, "
            f"noop jobs/s {pool['noop'] / separate['noop']:.2f}, "
            f"io jobs/s {pool['io'] / separate['io']:.2f}; "
            f"pool / 1 loop: noop {pool['noop'] / one['noop']:.2f}x, "
            f"io {pool['io'] / one['io']:.2f}x (ideal io {n}x)"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
