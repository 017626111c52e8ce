"""Issue 12: a test bed stops everything it started and removes its state, however its run
ends: when the process that started it is gone (pytest killed, a demo interrupted), and
when its supervisor itself is SIGKILLed (then the next start, or `make testbed-down`,
sweeps what it left: processes, the node's namespace and veth, cgroups, mounts)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from e2e_helpers import wait_for
from testbed.cluster import Cluster, start_serve, sweep, wait_ready
from testbed.network import REGISTRY, NodeNetwork
from testbed.node import CGROUP_ROOT, component_cgroup, mounts_under, pods_cgroup
from testbed.processes import exited, stop_pid

pytestmark = pytest.mark.e2e


@pytest.fixture
def owner() -> Iterator[subprocess.Popen[bytes]]:
    """A stand-in for the run that owns a test bed (pytest, the demo)."""
    process = subprocess.Popen(["sleep", "600"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def leftovers(state: Path, network: NodeNetwork, pids: dict[str, int]) -> list[str]:
    found = [f"process {name} ({pid})" for name, pid in pids.items() if not exited(pid)]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    if network.netns in netns:
        found.append(f"namespace {network.netns}")
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout
    if network.host_veth in links:
        found.append(f"veth {network.host_veth}")
    if (REGISTRY / network.id).exists():
        found.append("registry entry")
    for group in (component_cgroup(network), pods_cgroup(network)):
        found += [str(p) for p in CGROUP_ROOT.glob(f"*/{group}")]
    found += [f"mount {m}" for m in mounts_under(state)]
    return found


def started(state: Path, owner: int | None) -> tuple[subprocess.Popen[bytes], dict[str, str]]:
    state.mkdir()
    process = start_serve(state, state / "serve.log", owner)
    try:
        wait_ready(state, process, state / "serve.log", timeout=600)
    except BaseException:
        stop_pid(process.pid)
        raise
    return process, json.loads((state / "network.json").read_text())


def test_owner_gone_then_everything_is_stopped_and_removed(
    cluster: Cluster, tmp_path: Path, owner: subprocess.Popen[bytes]
) -> None:
    if cluster.state_dir is None:
        pytest.skip("starts test beds of its own: this machine only")
    state = tmp_path / "bed"
    serve, addresses = started(state, owner.pid)
    network = NodeNetwork.recorded(addresses)
    pids = json.loads((state / "pids.json").read_text())
    assert leftovers(state, network, {}), "a live test bed has a namespace, cgroups, mounts"
    owner.kill()
    owner.wait()
    wait_for(lambda: serve.poll() is not None, 90, 0.5, "the supervisor to stop by itself")
    wait_for(lambda: not leftovers(state, network, pids), 15, 0.5, "nothing left")
    assert not (state / "node").exists() and not (state / "controlplane").exists()
    assert not (state / "volumes").exists()  # the default StorageClass's local volumes


def test_supervisor_killed_then_the_sweep_removes_what_it_left(
    cluster: Cluster, tmp_path: Path
) -> None:
    if cluster.state_dir is None:
        pytest.skip("starts test beds of its own: this machine only")
    state = tmp_path / "bed"
    serve, addresses = started(state, None)
    network = NodeNetwork.recorded(addresses)
    pids = json.loads((state / "pids.json").read_text())
    os.kill(serve.pid, signal.SIGKILL)
    serve.wait()
    left = leftovers(state, network, {k: v for k, v in pids.items() if k != "serve"})
    assert any("namespace" in item for item in left), left  # the kill really left things
    sweep(state)
    wait_for(lambda: not leftovers(state, network, pids), 30, 0.5, "nothing left")
