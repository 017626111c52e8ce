"""The alert rule file parses, and every alert has the fields Alertmanager users expect."""

from __future__ import annotations

from pathlib import Path

import yaml

ALERTS = Path(__file__).resolve().parents[3] / "charts/taskqueue-operator/files/alerts.yaml"


def rules() -> list[dict]:
    document = yaml.safe_load(ALERTS.read_text())
    return [rule for group in document["groups"] for rule in group["rules"]]


def test_every_seed_threshold_has_an_alert() -> None:
    names = {rule["alert"] for rule in rules()}
    assert {
        "TaskQueueBacklogWarning",
        "TaskQueueBacklogCritical",
        "TaskQueueFailureRateWarning",
        "TaskQueueFailureRateCritical",
        "TaskQueueNoWorkers",
        "TaskQueueDeadLettersWarning",
        "TaskQueueDeadLettersCritical",
        "TaskQueueJobWaitAboveTarget",
        "TaskQueueRedisUnreachable",
    } <= names


def test_rules_are_complete() -> None:
    for rule in rules():
        assert rule["expr"].strip(), rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert "for" in rule, rule["alert"]


def test_every_alert_fires_over_its_threshold_and_not_under() -> None:
    """`promtool test rules` (built by `make binaries`) on synthetic series."""
    import subprocess

    from testbed.build import bin_dir

    promtool = bin_dir() / "promtool"
    assert promtool.exists(), "run `make binaries` (it builds promtool)"
    tests = Path(__file__).resolve().parents[2] / "promtool" / "alerts_test.yaml"
    done = subprocess.run(
        [str(promtool), "test", "rules", str(tests)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout + done.stderr
