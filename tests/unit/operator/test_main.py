"""main parses the settings once and hands them to kopf explicitly: no os.environ trip."""

from __future__ import annotations

import gc
import os
from typing import Any

import kopf
import pytest
from taskqueue_operator import main, metrics


def test_main_passes_the_settings_in_kopfs_memo(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: dict[str, Any] = {}
    monkeypatch.setattr(kopf, "run", lambda **kwargs: seen.update(kwargs))
    monkeypatch.setattr(metrics, "serve", lambda port: seen.setdefault("metrics", port))
    monkeypatch.setattr(main, "tune_gc", lambda: seen.setdefault("gc", True))
    monkeypatch.delenv("TASKQUEUE_DASHBOARD_PORT", raising=False)
    monkeypatch.delenv("TASKQUEUE_LEADER_ELECTION_NAMESPACE", raising=False)
    before = dict(os.environ)
    argv = ["-n", "a", "--dashboard-port", "8082", "--leader-election-namespace", "tq"]
    assert main.main(argv) == 0
    assert dict(os.environ) == before  # nothing written back for the handlers to read
    options = seen["memo"].operator
    assert options.dashboard_port == 8082 and options.leader_election_namespace == "tq"
    assert seen["standalone"] is True and "peering_name" not in seen
    assert seen["namespaces"] == ["a"] and seen["clusterwide"] is False
    assert seen["metrics"] == 9090
    assert seen["gc"] is True


def test_tune_gc_freezes_what_is_imported_and_collects_less_often() -> None:
    thresholds = gc.get_threshold()
    try:
        main.tune_gc()
        assert gc.get_threshold() == main.GC_THRESHOLDS
        assert gc.get_threshold()[0] > thresholds[0]
        assert gc.get_freeze_count() > 0
    finally:
        gc.set_threshold(*thresholds)
        gc.unfreeze()
