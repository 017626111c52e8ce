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
