"""JSON logs: one object per line on stdout, for the cluster's log collector."""

from __future__ import annotations

import json
import logging
import re
import sys
import threading
from datetime import UTC, datetime
from typing import Any, TextIO

# rq colours its messages when stdout is a terminal; strip that from JSON.
_ANSI_RE = re.compile(r"\x1b\[[0-9;]*m")

# Attributes every LogRecord has; anything else came in through `extra=`.
_STANDARD_ATTRS = frozenset(
    vars(logging.LogRecord("", 0, "", 0, "", None, None)).keys()
    | {"message", "asctime", "taskName"}
)


class JsonFormatter(logging.Formatter):
    """Formats a record as a single-line JSON object.

    Fixed keys: ``time`` (UTC, ISO 8601), ``level``, ``logger``, ``message``,
    ``pid``; ``exc`` holds a traceback when there is one; static fields given at
    construction (e.g. the worker name) and ``extra=`` fields are added as is.
    """

    def __init__(self, static: dict[str, Any] | None = None) -> None:
        super().__init__()
        self.static = dict(static or {})

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": _ANSI_RE.sub("", record.getMessage()),
            "pid": record.process,
        }
        entry.update(self.static)
        for key, value in vars(record).items():
            if key not in _STANDARD_ATTRS and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exc"] = self.formatException(record.exc_info)
        elif record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        return json.dumps(entry, default=str, ensure_ascii=False)


def setup_json_logging(
    level: str = "INFO", static: dict[str, Any] | None = None, stream: TextIO | None = None
) -> logging.Handler:
    """Route every logger (rq's, the jobs') through one JSON handler on stdout.

    rq adds its own plain-text handlers only when no ancestor logger has one, so a
    root handler installed before the worker starts keeps all output JSON.
    """
    handler = logging.StreamHandler(stream if stream is not None else sys.stdout)
    handler.setFormatter(JsonFormatter(static))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level)
    logging.captureWarnings(True)

    # Crashes outside any logger call would otherwise print plain-text tracebacks.
    def excepthook(kind: type[BaseException], value: BaseException, tb: Any) -> None:
        logging.getLogger("taskqueue").critical("uncaught exception", exc_info=(kind, value, tb))

    def thread_excepthook(args: threading.ExceptHookArgs) -> None:
        if args.exc_type is not SystemExit and args.exc_value is not None:
            logging.getLogger("taskqueue").critical(
                "uncaught exception in thread %s",
                args.thread.name if args.thread else "?",
                exc_info=(args.exc_type, args.exc_value, args.exc_traceback),
            )

    sys.excepthook = excepthook
    threading.excepthook = thread_excepthook
    return handler
