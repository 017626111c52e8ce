"""`python -m testbed up|down|status` (PYTHONPATH=tests): the developer's local cluster
(a control plane and a real containerd node; see testbed.serve).

`up` starts the supervisor detached, writes `.testbed/kubeconfig` and links kubectl and
helm into `.testbed/bin`, its PIDs in `.testbed/pids.json`; `down` stops it by its recorded
PID (and, if it died, what it left behind, by the PIDs it recorded). With
TASKQUEUE_TESTBED_OWNER=<pid> (a test running `make testbed-up`), the test bed also stops
by itself once that process is gone.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys

from testbed.cluster import local_cluster, sweep
from testbed.processes import TESTS, exited, stop_pid

STATE = TESTS.parent / ".testbed"
OWNER_ENV = "TASKQUEUE_TESTBED_OWNER"


def recorded_pid() -> int | None:
    pid_file = STATE / "serve.pid"
    if pid_file.exists():
        pid = int(pid_file.read_text())
        if not exited(pid):
            return pid
    return None


def up() -> int:
    running = recorded_pid() is not None
    if running and (STATE / "ready").exists():
        print(f"test bed already up: export KUBECONFIG={STATE / 'kubeconfig'}")
        return 0
    if not running:
        sweep(STATE)  # what a crashed supervisor left behind
    owner = os.environ.get(OWNER_ENV)
    cluster, process = local_cluster(STATE, owner=int(owner) if owner else None)
    (STATE / "serve.pid").write_text(str(process.pid))
    (STATE / "bin").mkdir(exist_ok=True)
    for tool in (cluster.kubectl_bin, cluster.helm_bin):
        link = STATE / "bin" / tool.name
        link.unlink(missing_ok=True)
        link.symlink_to(tool)
    seconds = (STATE / "ready").read_text().strip()
    print(f"test bed up in {seconds}s (pid {process.pid})")
    venv = TESTS.parent / ".venv" / "bin"  # the kubectl plugin (kubectl-taskqueue), rq
    print(f"  export KUBECONFIG={STATE / 'kubeconfig'} PATH={STATE / 'bin'}:{venv}:$PATH")
    return 0


def down() -> int:
    pid = recorded_pid()
    if pid is None:
        print("the test bed's supervisor is not running")
    else:
        stop_pid(pid)
        print(f"test bed stopped (pid {pid})")
    leftovers = sweep(STATE)  # a supervisor killed with -9 leaves its children running
    if leftovers:
        print(f"stopped leftover processes {leftovers}")
    # Nothing of a stopped bed stays: etcd data, certificates, containerd's store, the
    # kubectl/helm links, the supervisor's log (its lines are in the output of a failure).
    shutil.rmtree(STATE, ignore_errors=True)
    return 0


def status() -> int:
    pid = recorded_pid()
    if pid is None:
        print("not running")
        return 1
    ready = (STATE / "ready").exists()
    print(f"{'running' if ready else 'starting'} (pid {pid}), kubeconfig {STATE / 'kubeconfig'}")
    if (STATE / "pids.json").exists():
        print((STATE / "pids.json").read_text().strip())
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m testbed")
    parser.add_argument("command", choices=["up", "down", "status"])
    command = parser.parse_args(argv).command
    return {"up": up, "down": down, "status": status}[command]()


if __name__ == "__main__":
    sys.exit(main())
