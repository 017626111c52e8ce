"""The test bed's supervisor: one process owning the control plane and the process-kubelet.

`python -m testbed.serve --state DIR` starts everything, writes `DIR/kubeconfig` and then
`DIR/ready`, and on SIGTERM stops the pods' processes, the controllers, the API server
and etcd, by PID, in that order. Both `make testbed-up` and the pytest session use it.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import signal
import sys
import threading
import time
from pathlib import Path

from testbed.build import build
from testbed.controlplane import ControlPlane
from testbed.kubelet import ProcessKubelet


def serve(state: Path) -> int:
    state.mkdir(parents=True, exist_ok=True)
    for stale in ("ready", "kubeconfig"):
        (state / stale).unlink(missing_ok=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    started = time.monotonic()
    control_plane = ControlPlane(build(), work_dir=state / "controlplane")
    control_plane.work_dir.mkdir(parents=True, exist_ok=True)
    kubelet: ProcessKubelet | None = None
    try:
        control_plane.start()
        shutil.copy(control_plane.kubeconfig, state / "kubeconfig")
        kubelet = ProcessKubelet(control_plane.kubeconfig, state)
        threading.Thread(target=kubelet.run, name="kubelet", daemon=True).start()
        (state / "ready").write_text(f"{time.monotonic() - started:.2f}\n")
        logging.info(
            "test bed ready in %.2fs: %s", time.monotonic() - started, control_plane.server
        )
        while not stop.wait(1.0):
            for name, process in control_plane.processes.items():
                if process.poll() is not None:
                    logging.error("%s exited with %s", name, process.returncode)
                    stop.set()
        return 0
    finally:
        if kubelet is not None:
            kubelet.stop()
        control_plane.stop(remove=True)
        (state / "ready").unlink(missing_ok=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--state", type=Path, required=True)
    options = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return serve(options.state)


if __name__ == "__main__":
    sys.exit(main())
