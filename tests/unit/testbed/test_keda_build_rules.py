"""KEDA's binary cache: its own pinned release, its own folder, rebuilt when go.mod changes."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from testbed import keda_build


def test_the_release_comes_from_its_own_go_mod_and_is_stamped() -> None:
    version = keda_build.keda_version()
    major, minor = (int(part) for part in version.lstrip("v").split(".")[:2])
    assert (major, minor) >= (2, 20), version  # the issue asks for v2.20.x or newer
    assert keda_build.keda_bin_dir().parts[-3:] == ("taskqueue-testbed", f"keda-{version}", "bin")
    assert f"github.com/kedacore/keda/v2/version.Version={version}" in " ".join(
        keda_build.keda_flags()
    )


def test_keda_is_rebuilt_when_its_go_mod_changes(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    module = tmp_path / "keda"
    module.mkdir()
    for name in ("go.mod", "go.sum"):
        shutil.copy(keda_build.MODULE / name, module / name)
    monkeypatch.setattr(keda_build, "MODULE", module)
    cache = tmp_path / "bin"
    cache.mkdir()
    assert keda_build.keda_outdated(cache)
    for name in keda_build.PACKAGES:
        (cache / name).write_text("")
    assert keda_build.keda_outdated(cache)  # no stamp: built from unknown inputs
    stamp = keda_build.stamp_file(cache, module)
    stamp.write_text(keda_build.fingerprint(module, keda_build.keda_flags()))
    assert not keda_build.keda_outdated(cache)
    with open(module / "go.sum", "a") as go_sum:
        go_sum.write("example.com/x v1.0.0 h1:changed=\n")
    assert keda_build.keda_outdated(cache)
