"""Heartbeat file for Kubernetes exec probes (no HTTP port, no shell needed).

The worker process rewrites a small JSON file every few seconds from a daemon
thread, from the moment it is registered in Redis until it stops (then the file
is removed). ``taskqueue-worker --probe`` checks it:

* liveness: the file's mtime is younger than ``--max-age`` (the process is alive
  and its interpreter is not wedged);
* readiness (``--probe --ready``): additionally the last Redis ping succeeded.

A Redis outage therefore makes pods unready but never restarts them: a restart
cannot fix Redis and would kill running jobs.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

log = logging.getLogger("taskqueue.health")

StatusFn = Callable[[], dict[str, Any]]


def write_atomically(path: Path, payload: dict[str, Any]) -> None:
    """Replace `path` whole, so a probe never reads a half-written file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(payload, default=str))
    os.replace(tmp, path)


class Heartbeat:
    """Daemon thread that refreshes `path` every `interval` seconds.

    `status` is called on each beat from the thread; its dict is merged into the
    file (an exception in it is recorded as ``ready: false``, never raised).
    """

    def __init__(self, path: Path, interval: float, status: StatusFn | None = None) -> None:
        self.path = path
        self.interval = interval
        self.status = status
        self._stop = threading.Event()
        self._file_lock = threading.Lock()  # a write and stop()'s removal never interleave
        self._thread: threading.Thread | None = None

    def beat(self) -> dict[str, Any]:
        payload: dict[str, Any] = {"time": time.time(), "pid": os.getpid(), "ready": True}
        if self.status is not None:
            try:
                payload.update(self.status())
            except Exception as exc:  # a probe signal must survive any status error
                payload.update(ready=False, error=f"{type(exc).__name__}: {exc}")
        with self._file_lock:
            if not self._stop.is_set():  # a beat that outlived stop() writes nothing
                write_atomically(self.path, payload)
        return payload

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.beat()
            except OSError as exc:
                log.warning("cannot write health file %s: %s", self.path, exc)
            self._stop.wait(self.interval)

    def start(self) -> Heartbeat:
        self.beat()  # fail loudly at start-up if the path is unwritable
        self._thread = threading.Thread(target=self._run, name="taskqueue-heartbeat", daemon=True)
        self._thread.start()
        return self

    def stop(self, remove: bool = True) -> None:
        """Stop beating (and remove the file). Does not wait for a beat whose status call
        is stuck on a Redis that does not answer: that beat will not write any more, and
        the thread is a daemon."""
        self._stop.set()
        with self._file_lock:
            if remove:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()


def probe(
    path: Path, max_age: float, require_ready: bool = False, now: float | None = None
) -> tuple[bool, str]:
    """Whether the heartbeat at `path` is fresh (and ready); a one-line reason."""
    now = time.time() if now is None else now
    try:
        mtime = path.stat().st_mtime
    except FileNotFoundError:
        return False, f"no heartbeat file at {path}: worker not started or stopped"
    age = now - mtime
    if age > max_age:
        return False, f"heartbeat {path} is stale: {age:.1f}s old > {max_age:g}s"
    if require_ready:
        try:
            content = json.loads(path.read_text() or "{}")
        except (OSError, ValueError) as exc:
            return False, f"heartbeat {path} unreadable: {exc}"
        if not content.get("ready", False):
            return False, f"worker not ready: {content.get('error', 'unknown reason')}"
    return True, f"ok: heartbeat {age:.1f}s old"
