"""JSON logs: one parsable object per line."""

from __future__ import annotations

import io
import json
import logging
import sys
import threading

import pytest
from taskqueue_worker.logs import JsonFormatter, setup_json_logging


def _record(msg: str, *args: object, **kw: object) -> logging.LogRecord:
    return logging.getLogger("rq.worker").makeRecord(
        "rq.worker", logging.INFO, "f", 1, msg, args, None, **kw
    )


def test_one_line_with_fixed_static_and_extra_fields() -> None:
    record = _record("job %s done\nsecond line", "abc", extra={"job_id": "abc", "rows": 3})
    line = JsonFormatter({"worker": "w-1"}).format(record)
    assert "\n" not in line
    entry = json.loads(line)
    assert entry["message"] == "job abc done\nsecond line"
    assert entry["level"] == "info" and entry["logger"] == "rq.worker"
    assert entry["worker"] == "w-1" and entry["job_id"] == "abc" and entry["rows"] == 3
    assert entry["time"].endswith("+00:00")


def test_colours_are_stripped_and_tracebacks_kept() -> None:
    try:
        raise ValueError("bad")
    except ValueError:
        record = logging.getLogger("x").makeRecord(
            "x", logging.ERROR, "f", 1, "\x1b[32mgreen\x1b[39;49;00m", (), sys.exc_info()
        )
    entry = json.loads(JsonFormatter().format(record))
    assert entry["message"] == "green"
    assert "ValueError: bad" in entry["exc"]


def test_setup_routes_every_logger_through_json(monkeypatch: pytest.MonkeyPatch) -> None:
    # setup_json_logging replaces the process-wide hooks: put pytest's back after.
    monkeypatch.setattr(sys, "excepthook", sys.excepthook)
    monkeypatch.setattr(threading, "excepthook", threading.excepthook)
    stream = io.StringIO()
    root = logging.getLogger()
    saved = (list(root.handlers), root.level)
    try:
        setup_json_logging("INFO", static={"pod": "p"}, stream=stream)
        logging.getLogger("rq.worker").info("hello %d", 1)
        logging.getLogger("user.task").warning("careful")
        logging.getLogger("user.task").debug("hidden")
    finally:
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in saved[0]:
            root.addHandler(handler)
        root.setLevel(saved[1])
        logging.captureWarnings(False)
    lines = stream.getvalue().splitlines()
    entries = [json.loads(line) for line in lines]
    assert [e["message"] for e in entries] == ["hello 1", "careful"]
    assert all(e["pod"] == "p" for e in entries)


def test_uncaught_exceptions_are_logged_as_json() -> None:
    import subprocess

    code = (
        "from taskqueue_worker.logs import setup_json_logging\n"
        "setup_json_logging('INFO')\n"
        "raise RuntimeError('kaboom')\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 1 and done.stderr == ""
    (line,) = done.stdout.splitlines()
    entry = json.loads(line)
    assert entry["level"] == "critical" and "RuntimeError: kaboom" in entry["exc"]
