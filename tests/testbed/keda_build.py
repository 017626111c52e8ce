"""Build the real KEDA from the Go module proxy, once per pinned release.

`python -m testbed.keda_build [--force]` (PYTHONPATH=tests) compiles KEDA's operator
(`cmd/operator`) and its external-metrics API server (`cmd/adapter`), the release pinned in
keda/go.mod, into `~/.cache/taskqueue-testbed/keda-<version>/bin`; nothing when they are
there and were built from the same go.mod/go.sum and flags. KEDA is not part of the default
test bed: only its smoke test and `make bench-keda` need it (it is a large build: every
scaler KEDA ships compiles in).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

from testbed.build import find_go, fingerprint, go_build, pinned, stamp_file

MODULE = Path(__file__).resolve().parent / "keda"
KEDA = "github.com/kedacore/keda/v2"
PACKAGES = {"keda-operator": f"{KEDA}/cmd/operator", "keda-adapter": f"{KEDA}/cmd/adapter"}
BUILT_AS = {"keda-operator": ("operator",), "keda-adapter": ("adapter",)}


def keda_version() -> str:
    return pinned(KEDA, MODULE / "go.mod")


def keda_bin_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "taskqueue-testbed" / f"keda-{keda_version()}" / "bin"


def keda_flags() -> list[str]:
    """As KEDA's Makefile stamps its release builds (the version shows in its logs and in
    the `keda_build_info` metric)."""
    version = keda_version()
    stamps = [f"-X {KEDA}/version.Version={version}", f"-X {KEDA}/version.GitCommit={version}"]
    return ["-trimpath", "-ldflags", " ".join(["-s", "-w", *stamps])]


def keda_outdated(directory: Path | None = None) -> bool:
    directory = directory or keda_bin_dir()
    stamp = stamp_file(directory, MODULE)
    return (
        any(not (directory / name).exists() for name in PACKAGES)
        or not stamp.exists()
        or stamp.read_text().strip() != fingerprint(MODULE, keda_flags())
    )


def build_keda(force: bool = False) -> Path:
    directory = keda_bin_dir()
    if not force and not keda_outdated(directory):
        return directory
    print(
        f"building KEDA {keda_version()} (operator, metrics adapter) into {directory}", flush=True
    )
    started = time.monotonic()
    go_build(
        MODULE,
        PACKAGES,
        directory,
        keda_flags(),
        stamp_file(directory, MODULE),
        fingerprint(MODULE, keda_flags()),
        BUILT_AS,
    )
    print(f"built in {time.monotonic() - started:.0f}s", flush=True)
    return directory


def keda_source() -> Path:
    """The pinned KEDA module's files (its config/ has the CRDs' kustomize bases), from the
    Go module cache (downloaded from the module proxy if absent)."""
    done = subprocess.run(
        [find_go(), "mod", "download", "-json", f"{KEDA}@{keda_version()}"],
        cwd=MODULE,
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "GOFLAGS": "-mod=mod"},
    )
    return Path(json.loads(done.stdout)["Dir"])


def keda_crds() -> Path:
    """KEDA's CRD kustomization (bases plus its patches), for `kubectl apply -k`."""
    return keda_source() / "config" / "crd"


if __name__ == "__main__":
    print(build_keda(force="--force" in sys.argv))
