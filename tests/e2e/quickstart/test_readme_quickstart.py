"""The README's quickstart, run exactly as written (issue "A user's day two", part 2).

The ```sh blocks between `<!-- quickstart:begin -->` and `<!-- quickstart:end -->` in
README.md are joined in order and run by `bash -euo pipefail` from the repository's root,
as a new user pastes them: `make testbed-up` (a test bed of its own in `.testbed`, next to
the session's), the operator's chart, examples/redis.yaml and examples/taskqueue.yaml, jobs
enqueued from this machine with plain RQ and with `rq enqueue` through a port-forward, the
workers scaling, the results, the kubectl plugin, the dashboard, `make testbed-down`. The
environment is the user's: no KUBECONFIG, and no .venv/bin or .testbed/bin on PATH, so the
README's own `export` must make `kubectl`, `helm`, `kubectl taskqueue` and `rq` found.

Checked on what the user sees: every job finished with its result (the table's Parquet file
written on the example's volume), the TaskQueue above one worker, the plugin's status
(Redis reached through the API server), the dashboard's JSON, and the test bed gone after.

Network rule: Python processes of the script get a guard (a sitecustomize on PYTHONPATH) that
refuses to look up cluster-internal names (`*.svc`, `*.cluster.local`) as a user's machine's
resolver would (the name does not exist), without the query leaving this machine: the plugin
tries the Secret's `redis.default.svc` directly before it goes through the API server.
Everything else the script reaches is on 127.0.0.1 or the test bed's own addresses.

Cleanup, also on failure or timeout: the script's process group (port-forwards included) is
killed, and `make testbed-down` always runs; the test bed also stops by itself if this
process is gone (TASKQUEUE_TESTBED_OWNER).
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[3]
README = REPO / "README.md"
STATE = REPO / ".testbed"
BEGIN = "<!-- quickstart:begin -->"
END = "<!-- quickstart:end -->"
SCRIPT_TIMEOUT = 2400.0  # a first run builds the images (several minutes) before the cluster
LOCAL_PORTS = (6380, 8081)  # the README's port-forwards on this machine
FENCE = re.compile(r"^```([^\n`]*)\n(.*?)^```[ \t]*$", re.M | re.S)

# Refuses cluster-internal names in the script's Python processes (see the docstring).
GUARD = """
import os
import socket

_getaddrinfo = socket.getaddrinfo
_SUFFIXES = (".svc", ".cluster.local")


def _guarded(host, *args, **kwargs):
    name = host.decode() if isinstance(host, bytes) else host
    if isinstance(name, str) and name.rstrip(".").lower().endswith(_SUFFIXES):
        with open(os.environ["QUICKSTART_REFUSED_NAMES"], "a") as refused:
            refused.write(name + "\\n")
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
    return _getaddrinfo(host, *args, **kwargs)


socket.getaddrinfo = _guarded
"""


def quickstart_script(readme: str) -> str:
    """The sh blocks between the markers, in order; fails loudly on anything that would
    make the test run less than the README shows (no markers, no block, another fence)."""
    assert readme.count(BEGIN) == 1, f"README.md needs exactly one {BEGIN}"
    assert readme.count(END) == 1, f"README.md needs exactly one {END}"
    start, end = readme.index(BEGIN) + len(BEGIN), readme.index(END)
    assert start < end, f"{END} comes before {BEGIN}"
    fences = FENCE.findall(readme[start:end])
    assert fences, "no ```sh block between the quickstart markers"
    others = [info for info, _ in fences if info.strip() != "sh"]
    assert not others, f"blocks between the markers that the test would not run: {others}"
    assert readme[start:end].count("```") == 2 * len(fences), "an unclosed ``` fence"
    blocks = [body for _, body in fences]
    assert all(body.strip() for body in blocks), "an empty ```sh block in the quickstart"
    return "\n".join(blocks)


def commands(script: str) -> list[str]:
    """The script's lines without comments, blank lines aside."""
    lines = [line.split("#")[0].strip() for line in script.splitlines()]
    return [line for line in lines if line]


def test_the_readme_has_a_quickstart_to_run() -> None:
    """Everywhere (no cluster): the quickstart is there, starts and stops its test bed, and
    does what the issue asks of it."""
    script = quickstart_script(README.read_text())
    lines = commands(script)
    assert lines[0] == "make testbed-up", lines[0]
    assert lines[-1] == "make testbed-down", lines[-1]
    for needed in (
        "PATH=$PWD/.testbed/bin:$PWD/.venv/bin:$PATH",
        "kubectl apply -f examples/redis.yaml",
        "kubectl apply -f examples/taskqueue.yaml",
        "kubectl wait --for=condition=Ready taskqueue/backtests",
        "kubectl port-forward svc/redis",
        ".enqueue(",
        "rq enqueue",
        "return_value()",
        "kubectl taskqueue status backtests",
        "port-forward deploy/taskqueue-taskqueue-operator 8081",
        "localhost:8081/api/taskqueues",
    ):
        assert needed in script, f"the quickstart no longer has {needed!r}"


def port_taken(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return True
    return False


def developer_test_bed_running() -> bool:
    pid_file = STATE / "serve.pid"
    if not pid_file.exists():
        return False
    try:
        os.kill(int(pid_file.read_text()), 0)
    except (ValueError, ProcessLookupError):
        return False
    return True


def user_environment(guard: Path, refused: Path) -> dict[str, str]:
    """This process's environment as a new user's shell would have it: no cluster, no
    virtualenv, none of the repository's bin folders on PATH, none of our variables."""
    dropped = {"KUBECONFIG", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME", "RQ_REDIS_URL"}
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in dropped and not key.startswith(("TASKQUEUE_", "PYTEST_"))
    }
    ours = {(REPO / ".venv" / "bin").resolve(), (STATE / "bin").resolve()}
    path = [p for p in env.get("PATH", "").split(os.pathsep) if p and Path(p).resolve() not in ours]
    env["PATH"] = os.pathsep.join(path or ["/usr/local/bin", "/usr/bin", "/bin"])
    env["PYTHONPATH"] = str(guard)
    env["QUICKSTART_REFUSED_NAMES"] = str(refused)
    env["TASKQUEUE_TESTBED_OWNER"] = str(os.getpid())
    return env


def stop_group(pgid: int) -> None:
    """The script's process group (bash, its port-forwards, a python): SIGTERM, then KILL."""
    for sig, wait in ((signal.SIGTERM, 5.0), (signal.SIGKILL, 0.0)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            return
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                return
            time.sleep(0.1)


def taskqueue_rows(log: str) -> list[dict[str, str]]:
    """The `kubectl get taskqueues` rows of `backtests`, by the first header's column names
    (rows printed --no-headers have widths of their own: split on whitespace, and only rows
    with every column filled count)."""
    headers = [line.split() for line in log.splitlines() if line.startswith("NAME ")]
    header = next((h for h in headers if "WORKERS" in h and "DESIRED" in h), None)
    assert header, "no header of `kubectl get taskqueues` in the output"
    rows = []
    for line in log.splitlines():
        fields = line.split()
        if fields[:1] == ["backtests"] and len(fields) == len(header):
            rows.append(dict(zip(header, fields, strict=True)))
    return rows


def number(text: str) -> int:
    return int(text) if text.isdigit() else 0


@pytest.mark.e2e
@pytest.mark.timeout(SCRIPT_TIMEOUT + 600)
def test_readme_quickstart_runs_as_written(request: pytest.FixtureRequest, tmp_path: Path) -> None:
    if request.config.getoption("--kubeconfig") or os.environ.get("KUBECONFIG"):
        pytest.skip(
            "runs the README's quickstart on a test bed of its own (make testbed-up): "
            "KUBECONFIG points at another cluster"
        )
    if os.geteuid() != 0:
        pytest.skip("the quickstart's `make testbed-up` needs root (the node's namespace)")
    if developer_test_bed_running():
        pytest.skip("a developer test bed is already running in .testbed (make testbed-down)")
    script = quickstart_script(README.read_text())
    taken = [port for port in LOCAL_PORTS if port_taken(port)]
    assert not taken, (
        f"127.0.0.1 port(s) {taken} are in use on this machine: the README's port-forwards "
        "need them (a local taskqueue-operator serves its dashboard on 8081)"
    )
    guard = tmp_path / "guard"
    guard.mkdir()
    (guard / "sitecustomize.py").write_text(GUARD)
    refused = tmp_path / "refused-names.txt"
    (tmp_path / "quickstart.sh").write_text(script)
    log_path = tmp_path / "quickstart.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            ["bash", "-xeuo", "pipefail", str(tmp_path / "quickstart.sh")],
            cwd=REPO,
            env={**user_environment(guard, refused), "PS4": "+ quickstart: "},
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: the port-forwards are in it
        )
    try:
        try:
            returncode: int | None = process.wait(timeout=SCRIPT_TIMEOUT)
        except subprocess.TimeoutExpired:
            returncode = None
    finally:
        stop_group(process.pid)
        process.wait()
        down = subprocess.run(
            ["make", "-s", "-C", str(REPO), "testbed-down"],
            capture_output=True,
            text=True,
            timeout=300,
            env={key: value for key, value in os.environ.items() if key != "KUBECONFIG"},
        )
    seconds = time.monotonic() - started
    output = log_path.read_text(errors="replace")
    print(f"quickstart: exit {returncode} after {seconds:.0f}s; log {log_path}")
    if refused.exists():
        print(
            f"names refused to the script (as NXDOMAIN): {sorted(set(refused.read_text().split()))}"
        )
    tail = "\n".join(output.splitlines()[-80:])
    assert returncode is not None, (
        f"the quickstart did not finish in {SCRIPT_TIMEOUT:.0f}s:\n{tail}"
    )
    assert returncode == 0, f"the quickstart failed (exit {returncode}):\n{tail}"
    assert down.returncode == 0, down.stderr

    # What the user sees, step by step.
    assert "test bed up in" in output, tail
    assert "enqueued 30 jobs on backtest-queue" in output, tail
    assert "Enqueued taskqueue_worker.examples.make_table(rows=5) with job-id 'table-1'" in output
    rows = taskqueue_rows(output)
    assert rows, f"no rows of `kubectl get taskqueues`:\n{tail}"
    assert any(number(row["PENDING"]) > 0 for row in rows), rows  # the jobs were seen waiting
    assert max(number(row["DESIRED"]) for row in rows) > 1, rows
    assert max(number(row["WORKERS"]) for row in rows) > 1, rows  # several workers took jobs
    assert "31 of 31 jobs finished" in output, tail
    assert "sleep-0 returned 5.0" in output, tail
    table = re.search(r"^table-1 returned (\{.*\})$", output, re.M)
    assert table, tail
    assert "'uri': '/data/results/table-1.parquet'" in table.group(1), table.group(1)
    assert "'rows': 5" in table.group(1), table.group(1)
    # The plugin found Redis behind the Secret's Service by itself, through the API server.
    assert re.search(
        r"^redis: via port-forward to pod redis-0 .*through the API server$", output, re.M
    )
    assert re.search(r"^TaskQueue:\s+default/backtests$", output, re.M), tail
    assert re.search(r"^backtest-queue(\s+\d+){5}\s+30\s*$", output, re.M), tail  # FINISHED 30
    # The dashboard's JSON (its first 300 characters), naming the TaskQueue.
    dashboard = [line for line in output.splitlines() if line.startswith(("[{", '{"'))]
    assert dashboard and '"backtests"' in dashboard[0], tail
    # And nothing is left of the quickstart's test bed.
    assert "test bed stopped" in output, tail
    assert not STATE.exists() or not (STATE / "serve.pid").exists()
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, 0)
        pytest.fail("processes of the quickstart's group outlived it")
    print(f"quickstart ran in {seconds:.0f}s")
