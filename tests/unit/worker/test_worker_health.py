"""Heartbeat file and the exec probe."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from taskqueue_worker.health import Heartbeat, probe, write_atomically


def test_heartbeat_writes_refreshes_and_removes_its_file(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "hb"
    beat = Heartbeat(path, interval=0.05, status=lambda: {"worker": "w1"}).start()
    try:
        first = json.loads(path.read_text())
        assert first["worker"] == "w1" and first["ready"] is True
        os.utime(path, (0, 0))  # pretend it is ancient: the thread must refresh it
        deadline = time.monotonic() + 10
        while path.stat().st_mtime == 0 and time.monotonic() < deadline:
            time.sleep(0.02)
        assert path.stat().st_mtime > 0
    finally:
        beat.stop()
    assert not path.exists()


def test_a_failing_status_makes_it_unready_not_dead(tmp_path: Path) -> None:
    def status() -> dict[str, object]:
        raise ConnectionError("redis down")

    payload = Heartbeat(tmp_path / "hb", interval=1, status=status).beat()
    assert payload["ready"] is False and "redis down" in payload["error"]
    assert probe(tmp_path / "hb", max_age=30)[0] is True
    ok, reason = probe(tmp_path / "hb", max_age=30, require_ready=True)
    assert not ok and "redis down" in reason


def test_probe_fresh_stale_and_missing(tmp_path: Path) -> None:
    path = tmp_path / "hb"
    ok, reason = probe(path, max_age=30)
    assert not ok and "no heartbeat" in reason
    write_atomically(path, {"ready": True})
    mtime = path.stat().st_mtime
    assert probe(path, max_age=30, now=mtime + 29)[0] is True
    ok, reason = probe(path, max_age=30, now=mtime + 31)
    assert not ok and "stale" in reason and "\n" not in reason
    assert probe(path, max_age=30, require_ready=True, now=mtime + 1)[0] is True


def test_write_atomically_leaves_no_temp_files(tmp_path: Path) -> None:
    for i in range(3):
        write_atomically(tmp_path / "hb", {"i": i})
    assert [p.name for p in tmp_path.iterdir()] == ["hb"]
    assert json.loads((tmp_path / "hb").read_text()) == {"i": 2}
