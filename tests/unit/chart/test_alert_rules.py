"""The alert rules: rendered by the chart (thresholds from the values, or each TaskQueue's
own targets), kept as files/alerts.yaml with the default values, tested with promtool.

`PYTHONPATH=tests .venv/bin/python tests/unit/chart/test_alert_rules.py` rewrites
files/alerts.yaml from the chart (needs the test bed's helm: `make binaries`).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[3]
CHART = ROOT / "charts/taskqueue-operator"
ALERTS = CHART / "files/alerts.yaml"
PROMTOOL_TESTS = ROOT / "tests/promtool"
HEADER = (
    "# GENERATED from templates/_alerts.tpl with the chart's default values: the rules of the\n"
    "# chart's PrometheusRule, as a plain Prometheus rule file. Regenerate with\n"
    "# `PYTHONPATH=tests .venv/bin/python tests/unit/chart/test_alert_rules.py`.\n"
)
# --set-json: helm's --set keeps fractions as strings (the schema wants numbers).
CUSTOM = [
    '{"backlogCriticalFactor": 2, "fixedBacklog": {"warning": 100, "critical": 200},'
    ' "failureRatio": {"warning": 0.2, "critical": 0.5},'
    ' "deadLetters": {"warning": 50, "critical": 100}}'
]


def tool(name: str) -> Path:
    from testbed.build import bin_dir

    path = bin_dir() / name
    if not path.exists():
        pytest.fail(f"run `make binaries` (it builds {name})")
    return path


def rendered_rules(*thresholds: str) -> str:
    """The PrometheusRule's spec as the chart renders it (with these thresholds, as JSON),
    as rule-file text."""
    args = [str(tool("helm")), "template", "t", str(CHART), "--api-versions"]
    args += ["monitoring.coreos.com/v1", "--show-only", "templates/prometheusrule.yaml"]
    args += ["--set", "metrics.prometheusRule.enabled=true"]
    for value in thresholds:
        args += ["--set-json", f"metrics.prometheusRule.thresholds={value}"]
    done = subprocess.run(args, capture_output=True, text=True, timeout=60, check=True)
    lines = done.stdout.splitlines()
    spec = lines[lines.index("spec:") + 1 :]
    return "\n".join(line.removeprefix("  ") for line in spec) + "\n"


def rules(text: str) -> list[dict]:
    document = yaml.safe_load(text)
    return [rule for group in document["groups"] for rule in group["rules"]]


def promtool_test(test_file: Path) -> str:
    done = subprocess.run(
        [str(tool("promtool")), "test", "rules", str(test_file)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "SUCCESS" in output
    return output


def test_the_rule_file_is_the_chart_rendered_with_the_default_values() -> None:
    assert ALERTS.read_text() == HEADER + rendered_rules(), (
        "files/alerts.yaml drifted from templates/_alerts.tpl: regenerate it (module docstring)"
    )


def test_every_seed_threshold_has_an_alert() -> None:
    names = {rule.get("alert") for rule in rules(ALERTS.read_text())}
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


def test_rules_are_complete_and_read_only_our_names() -> None:
    for rule in rules(ALERTS.read_text()):
        assert rule["expr"].strip(), rule
        assert "rq_" not in rule["expr"].replace("taskqueue_", ""), rule  # not rq-exporter's
        if "record" in rule:
            continue
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert rule["annotations"]["summary"], rule["alert"]
        assert "for" in rule, rule["alert"]


def test_every_alert_fires_over_its_threshold_and_not_under() -> None:
    """`promtool test rules` (built by `make binaries`) on synthetic series."""
    promtool_test(PROMTOOL_TESTS / "alerts_test.yaml")


def test_chart_values_move_the_thresholds(tmp_path: Path) -> None:
    (tmp_path / "custom_alerts.yaml").write_text(rendered_rules(*CUSTOM))
    shutil.copy(PROMTOOL_TESTS / "alerts_custom_test.yaml", tmp_path)
    promtool_test(tmp_path / "alerts_custom_test.yaml")


if __name__ == "__main__":
    ALERTS.write_text(HEADER + rendered_rules())
    print(f"wrote {ALERTS}", file=sys.stderr)
