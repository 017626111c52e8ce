"""Which dead letters a `dlq requeue`/`dlq purge` acts on. Pure."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from taskqueue_plugin.errors import UsageError
from taskqueue_plugin.records import JobRecord

# Go-style durations as in the CRD, plus days and weeks: "clean up jobs older than 7d".
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_AGE = re.compile(r"^(?:\d+(?:\.\d+)?(?:ms|s|m|h|d|w))+$")
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")


def parse_age(value: str) -> float:
    """Seconds in '90s', '15m', '1h30m', '7d', '2w'; UsageError for anything else."""
    cleaned = value.strip()
    if not _AGE.match(cleaned):
        raise UsageError(
            f"invalid duration {value!r}: use a number with a unit, e.g. 30s, 15m, 1h30m, 7d, 2w"
        )
    return sum(float(n) * _UNIT_SECONDS[unit] for n, unit in _PART.findall(cleaned))


@dataclass(frozen=True)
class Selector:
    """`--all`, explicit ids, or filters (AND-ed): `--older-than` and `--exception`."""

    all: bool = False
    ids: tuple[str, ...] = ()
    older_than: float | None = None
    exception: str | None = None

    def matches(self, record: JobRecord, now: datetime) -> bool:
        if self.all:
            return True
        if self.ids:
            return record.id in self.ids
        if self.older_than is not None:
            failed_at = record.failed_at
            # Unknown failure time: never old enough (a purge must not guess).
            if failed_at is None or (now - failed_at).total_seconds() < self.older_than:
                return False
        if self.exception is not None:
            haystack = record.exc_text or ""
            if self.exception not in haystack:
                return False
        return True

    def describe(self) -> str:
        if self.all:
            return "all failed jobs"
        if self.ids:
            return f"{len(self.ids)} job id(s)"
        parts = []
        if self.older_than is not None:
            parts.append(f"failed more than {self.older_than:g}s ago")
        if self.exception is not None:
            parts.append(f"exception containing {self.exception!r}")
        return "failed jobs " + " and ".join(parts)


def build_selector(
    select_all: bool,
    ids: Sequence[str],
    older_than: str | None,
    exception: str | None,
) -> Selector:
    """Exactly one kind of selection; refusing none protects against `purge` by accident."""
    kinds = sum([bool(select_all), bool(ids), older_than is not None or exception is not None])
    if kinds == 0:
        raise UsageError(
            "say which failed jobs: --all, JOB_ID..., --older-than DURATION or --exception TEXT"
        )
    if kinds > 1:
        raise UsageError("use one of --all, job ids, or filters (--older-than/--exception)")
    if exception is not None and not exception:
        raise UsageError("--exception needs a non-empty text")
    unique = tuple(dict.fromkeys(ids))
    return Selector(
        all=bool(select_all),
        ids=unique,
        older_than=parse_age(older_than) if older_than is not None else None,
        exception=exception,
    )
