"""The four distributions of this repository and the developer workspace that holds them.

contract/ (taskqueue-contract), operator/ (taskqueue-operator), worker-image/
(taskqueue-worker) and plugin/ (kubectl-taskqueue) each have a pyproject.toml; the root
pyproject.toml installs all four editable with the union of their dependencies.
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DISTRIBUTIONS = {
    "contract": ("taskqueue-contract", "taskqueue_contract"),
    "operator": ("taskqueue-operator", "taskqueue_operator"),
    "worker-image": ("taskqueue-worker", "taskqueue_worker"),
    "plugin": ("kubectl-taskqueue", "taskqueue_plugin"),
}
OURS = {name for name, _ in DISTRIBUTIONS.values()}
# Which of our packages each package may import (the contract: none but itself).
MAY_IMPORT = {
    "taskqueue_contract": {"taskqueue_contract"},
    "taskqueue_operator": {"taskqueue_contract", "taskqueue_operator"},
    "taskqueue_worker": {"taskqueue_contract", "taskqueue_worker"},
    "taskqueue_plugin": {"taskqueue_contract", "taskqueue_operator", "taskqueue_plugin"},
}
# Modules of the operator's package that still import taskqueue_worker (not ours to edit
# in this change; see the report of issue 13 part 7). Remove entries as they are fixed.
KNOWN_CROSSINGS: set[str] = set()


def project(directory: str) -> dict:
    return tomllib.loads((ROOT / directory / "pyproject.toml").read_text())["project"]


def name_of(requirement: str) -> str:
    return re.split(r"[<>=!~ \[;]", requirement, maxsplit=1)[0].lower()


def test_each_distribution_has_its_own_pyproject() -> None:
    for directory, (name, package) in DISTRIBUTIONS.items():
        assert project(directory)["name"] == name
        assert (ROOT / directory / package / "__init__.py").exists()


def test_the_workspace_carries_every_dependency_and_script() -> None:
    root = project(".")
    wanted = {
        dep
        for directory in DISTRIBUTIONS
        for dep in project(directory)["dependencies"]
        if name_of(dep) not in OURS
    }
    wanted |= {dep for dep in project("plugin")["optional-dependencies"]["export"]}
    assert set(root["dependencies"]) == wanted
    scripts = {}
    for directory in DISTRIBUTIONS:
        scripts.update(project(directory).get("scripts", {}))
    assert root["scripts"] == scripts


def test_the_contract_needs_nothing_but_the_standard_library() -> None:
    assert project("contract")["dependencies"] == []
    for directory in ("operator", "worker-image", "plugin"):
        assert "taskqueue-contract" in {name_of(d) for d in project(directory)["dependencies"]}


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_packages_import_only_what_their_distribution_depends_on(package: str) -> None:
    directory = next(d for d, (_, p) in DISTRIBUTIONS.items() if p == package)
    base = ROOT / directory
    for path in sorted((base / package).rglob("*.py")):
        relative = str(path.relative_to(base))
        if relative in KNOWN_CROSSINGS:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                modules = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = [node.module]
            else:
                continue
            for module in modules:
                top = module.split(".")[0]
                if top.startswith("taskqueue_"):
                    assert top in MAY_IMPORT[package], f"{relative} imports {module}"


def test_the_plugin_needs_pandas_only_for_export() -> None:
    plugin = project("plugin")
    assert not {"pandas", "pyarrow"} & {name_of(d) for d in plugin["dependencies"]}
    assert {name_of(d) for d in plugin["optional-dependencies"]["export"]} == {
        "pandas",
        "pyarrow",
    }
