"""The binary cache's rules: versions from go.mod, one folder per version, rebuild on change."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from testbed import build


def test_versions_come_from_the_pinned_go_mod() -> None:
    assert build.kubernetes_version().startswith("v1.")
    assert build.pinned("helm.sh/helm/v3").startswith("v3.")
    assert build.bin_dir().parts[-3:] == ("taskqueue-testbed", build.kubernetes_version(), "bin")


def test_versions_are_stamped_into_the_binaries() -> None:
    flags = " ".join(build.build_flags(build.TOOLS))
    version = build.kubernetes_version()
    assert f"k8s.io/component-base/version.gitVersion={version}" in flags
    assert f"k8s.io/client-go/pkg/version.gitVersion={version}" in flags
    assert f"helm.sh/helm/v3/internal/version.version={build.pinned('helm.sh/helm/v3')}" in flags


def test_cache_is_outdated_until_every_binary_and_stamp_is_there(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    tools = tmp_path / "tools"
    tools.mkdir()
    for name in ("go.mod", "go.sum"):
        shutil.copy(build.TOOLS / name, tools / name)
    monkeypatch.setattr(build, "TOOLS", tools)
    monkeypatch.setattr(build, "MODULE_OF", {"kubectl": tools})
    monkeypatch.setattr(build, "PACKAGES", {"kubectl": build.PACKAGES["kubectl"]})
    cache = tmp_path / "bin"
    cache.mkdir()
    assert build.outdated(cache) == ["kubectl"]
    (cache / "kubectl").write_text("")
    assert build.outdated(cache) == ["kubectl"]  # no stamp: built from unknown inputs
    build.stamp_file(cache, tools).write_text(build.fingerprint(tools))
    assert build.outdated(cache) == []
    with open(tools / "go.sum", "a") as go_sum:
        go_sum.write("example.com/x v1.0.0 h1:changed=\n")
    assert build.outdated(cache) == ["kubectl"]
