"""N RQ work loops in one pod (``spec.worker.processes``): a supervisor that forks them.

The supervisor imports rq and the ``TASKQUEUE_PRELOAD`` modules once, then forks one
loop per slot; each runs the same worker as a one-loop pod (:func:`runtime.run`), so
warm shutdown, outage survival and bounded shutdown hold per loop. The supervisor:

* forwards SIGTERM/SIGINT to every loop: the first is a warm shutdown (busy loops finish
  their job, idle ones leave at once), a second one cold (rq's own rule);
* restarts a loop that died while the pod runs, in the same slot, under a new name; a
  loop that fails before it registered (a bad setting, a refused Redis password), or
  more than `MAX_RESTARTS` restarts within `RESTART_WINDOW_SECONDS`, stops the pod with
  that loop's exit code, so the kubelet reports the failure instead of a quiet loop;
* writes the pod's heartbeat file (the one the probes read) only while every loop
  beats: ready only while all loops are registered and reach Redis, and no beat at all
  once one loop's own heartbeat has been stale for `STALE_AFTER_SECONDS` (a wedged loop;
  the liveness probe then restarts the container).

Why not rq's ``WorkerPool`` (rq 3.0, ``rq worker-pool``): it names loops by a random
uuid (the operator could not tell a loop replaced inside a live pod from its siblings),
builds each worker itself with fixed arguments (no hostname, job-timeout bound, heartbeat
file or outage handling of ours), restarts dead loops without a limit and ignores their
exit codes (a crash-looping loop never surfaces as a pod failure), runs rq's scheduler
in every loop, and polls each child with a 0.1 s join per second. Overriding that leaves
nothing of it.
"""

from __future__ import annotations

import contextlib
import ctypes
import json
import logging
import os
import signal
import sys
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from taskqueue_contract.worker_names import worker_name

from taskqueue_worker import runtime
from taskqueue_worker.health import write_atomically
from taskqueue_worker.lifecycle import EarlyStop
from taskqueue_worker.logs import setup_json_logging

log = logging.getLogger("taskqueue.pool")

STOP_SIGNALS = frozenset({signal.SIGTERM, signal.SIGINT})
WATCHED_SIGNALS = STOP_SIGNALS | {signal.SIGCHLD}
MAX_RESTARTS = 5
RESTART_WINDOW_SECONDS = 60.0
STALE_AFTER_SECONDS = 30.0
"""A loop's heartbeat this old (or missing this long after its start) means it is wedged:
the probes' default max age."""
_PR_SET_PDEATHSIG = 1


@dataclass
class Loop:
    """One forked work loop."""

    slot: int
    pid: int
    name: str
    health_file: Path
    started: float
    """time.monotonic() at the fork."""
    registered: bool = False
    """Its heartbeat file has appeared: it got past start-up and registered in Redis
    (or waits for Redis, alive)."""


def slot_health_file(pod_file: Path, slot: int) -> Path:
    return pod_file.with_name(f"{pod_file.name}.{slot}")


def _die_with_parent(parent: int) -> None:
    """A loop whose supervisor died gets SIGTERM (a warm shutdown), never lives on alone."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    if os.getppid() != parent:  # died before prctl took effect
        os.kill(os.getpid(), signal.SIGTERM)


def _read_beat(path: Path) -> dict[str, Any] | None:
    try:
        beat = json.loads(path.read_text() or "{}")
        beat["mtime"] = path.stat().st_mtime
    except (OSError, ValueError):
        return None
    return beat if isinstance(beat, dict) else None


class Pool:
    """Supervises `processes` loops of `settings` (one per slot) until they all stop."""

    def __init__(
        self,
        settings: runtime.WorkerSettings,
        processes: int,
        run_loop: Callable[[runtime.WorkerSettings, EarlyStop], int] = runtime.main_guarded,
    ) -> None:
        self.settings = settings
        self.processes = processes
        self.run_loop = run_loop
        self.loops: dict[int, Loop] = {}  # by pid
        self.stop_signals = 0
        self.exit_code: int | None = None
        self.restarts: deque[float] = deque()
        self.finite = settings.burst or settings.max_jobs is not None
        self.beat_interval = min(settings.health_interval, 1.0)

    # --- the loops ----------------------------------------------------------------------

    def slot_settings(self, slot: int) -> runtime.WorkerSettings:
        return replace(
            self.settings,
            worker_name=worker_name(self.settings.pod_name, slot),
            health_file=slot_health_file(self.settings.health_file, slot),
            with_scheduler=slot == 0,
        )

    def spawn(self, slot: int) -> Loop:
        settings = self.slot_settings(slot)
        parent = os.getpid()
        sys.stdout.flush()
        sys.stderr.flush()
        pid = os.fork()
        if pid == 0:  # the loop: stop signals are blocked until its own handler is in
            code = 1
            try:
                early = EarlyStop().install()
                signal.pthread_sigmask(signal.SIG_UNBLOCK, WATCHED_SIGNALS)
                _die_with_parent(parent)
                setup_json_logging(
                    settings.log_level,
                    static={"worker": settings.worker_name, "pod": settings.pod_name, "slot": slot},
                )
                code = self.run_loop(settings, early)
            except BaseException:
                log.exception("work loop %d crashed", slot)
            finally:
                sys.stdout.flush()
                sys.stderr.flush()
                os._exit(code)
        loop = Loop(slot, pid, settings.worker_name, settings.health_file, time.monotonic())
        self.loops[pid] = loop
        log.info("started work loop", extra={"slot": slot, "loop_pid": pid, "loop": loop.name})
        return loop

    def signal_loops(self, signum: int) -> None:
        for pid in list(self.loops):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

    def request_stop(self, signum: int) -> None:
        self.stop_signals += 1
        how = "warm" if self.stop_signals == 1 else "cold"
        log.info(
            "stop requested: forwarding to the work loops (%s shutdown)",
            how,
            extra={"signal": signal.Signals(signum).name, "loops": len(self.loops)},
        )
        self.signal_loops(signal.SIGTERM)

    def fail(self, code: int, why: str) -> None:
        """Stop the pod with `code`: the other loops shut down warm first."""
        if self.exit_code is None:
            self.exit_code = code if code != 0 else runtime.EXIT_FAILED
        log.error("%s: stopping the pod with exit code %d", why, self.exit_code)
        if not self.stop_signals:
            self.stop_signals = 1
            self.signal_loops(signal.SIGTERM)

    def reap(self, now: float) -> None:
        while self.loops:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                self.loops.clear()
                return
            if pid == 0:
                return
            loop = self.loops.pop(pid, None)
            if loop is not None:
                self.loop_ended(loop, os.waitstatus_to_exitcode(status), now)

    def loop_ended(self, loop: Loop, code: int, now: float) -> None:
        if code < 0:  # killed by a signal: report it as a shell would
            code = 128 - code
        extra = {"slot": loop.slot, "loop": loop.name, "exit_code": code}
        if self.stop_signals or self.finite:
            log.info("work loop ended", extra=extra)
            if code != 0 and self.exit_code is None:
                self.exit_code = code
            return
        registered = loop.registered or _read_beat(loop.health_file) is not None
        if not registered:
            self.fail(code, f"work loop {loop.slot} failed at start-up (exit code {code})")
            return
        while self.restarts and self.restarts[0] <= now - RESTART_WINDOW_SECONDS:
            self.restarts.popleft()
        if len(self.restarts) >= MAX_RESTARTS:
            self.fail(
                code,
                f"work loop {loop.slot} died (exit code {code}) after {MAX_RESTARTS} restarts "
                f"within {RESTART_WINDOW_SECONDS:g}s",
            )
            return
        self.restarts.append(now)
        log.warning("work loop died: restarting it", extra=extra)
        self.spawn(loop.slot)

    # --- the pod's heartbeat ------------------------------------------------------------

    def beat(self, now: float) -> None:
        """The pod's heartbeat from the loops' own (see the module docstring)."""
        wall = time.time()
        states: list[dict[str, Any]] = []
        problems: list[str] = []
        for loop in sorted(self.loops.values(), key=lambda item: item.slot):
            beat = _read_beat(loop.health_file)
            if beat is not None and beat.get("pid") == loop.pid:
                loop.registered = True
                if wall - beat["mtime"] > STALE_AFTER_SECONDS:
                    return  # wedged: no beat, the liveness probe fails
                if not beat.get("ready", False):
                    problems.append(f"loop {loop.slot}: {beat.get('error') or beat.get('state')}")
                states.append({"slot": loop.slot, "worker": loop.name, "state": beat.get("state")})
            else:
                if now - loop.started > STALE_AFTER_SECONDS:
                    return
                problems.append(f"loop {loop.slot}: starting")
        missing = self.processes - len(self.loops)
        if missing > 0:
            problems.append(f"{missing} of {self.processes} loops restarting")
        payload: dict[str, Any] = {
            "time": wall,
            "pid": os.getpid(),
            "ready": not problems,
            "loops": states,
        }
        if problems:
            payload["error"] = "; ".join(problems)
        try:
            write_atomically(self.settings.health_file, payload)
        except OSError as exc:
            log.warning("cannot write health file %s: %s", self.settings.health_file, exc)

    # --- the supervisor -----------------------------------------------------------------

    def run(self, early: EarlyStop) -> int:
        self.settings.health_file.unlink(missing_ok=True)
        failed = runtime.preload(self.settings.preload)  # once, inherited by every loop
        if failed is not None:
            return failed
        # From here on stop signals are taken synchronously (sigtimedwait), so a signal
        # between two forks is never lost nor seen by a loop before its own handler.
        signal.pthread_sigmask(signal.SIG_BLOCK, WATCHED_SIGNALS)
        if early.requested:
            log.info("stop requested during start-up: exiting before the loops start")
            return runtime.EXIT_OK
        log.info(
            "starting worker pool",
            extra={"processes": self.processes, "queues": self.settings.queues},
        )
        for slot in range(self.processes):
            self.spawn(slot)
        try:
            while self.loops:
                info = signal.sigtimedwait(WATCHED_SIGNALS, self.beat_interval)
                if info is not None and info.si_signo in STOP_SIGNALS:
                    self.request_stop(info.si_signo)
                now = time.monotonic()
                self.reap(now)
                if self.loops:
                    self.beat(now)
        finally:
            self.settings.health_file.unlink(missing_ok=True)
        code = runtime.EXIT_OK if self.exit_code is None else self.exit_code
        log.info("worker pool stopped", extra={"exit_code": code})
        return code


def main(settings: runtime.WorkerSettings, processes: int, early: EarlyStop) -> int:
    signal.signal(signal.SIGCHLD, signal.SIG_DFL)
    try:
        return Pool(settings, processes).run(early)
    finally:
        sys.stdout.flush()
