"""The images the real-node test bed runs, built here without a Docker engine (testbed.images),
inspected, and run under runc the way a restricted pod runs them: read-only root filesystem,
uid 10001, no capabilities, no-new-privileges, a tmpfs on /tmp, and every shell of the image
masked, so that it is the exec-form console script, not a shell, that runs.

The first run builds the base and both images (several minutes); later runs reuse buildah's
layer cache and the archives (seconds)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import subprocess
import tarfile
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from testbed.images import (
    BuiltImage,
    buildah,
    ensure_images,
    locked,
    megabytes,
    operator_image,
    redis_image,
    worker_image,
)
from testbed.redis_server import RedisServer

pytestmark = [
    pytest.mark.integration,
    pytest.mark.skipif(shutil.which("buildah") is None, reason="buildah is not installed"),
    pytest.mark.skipif(shutil.which("runc") is None, reason="runc is not installed"),
    pytest.mark.skipif(os.geteuid() != 0, reason="buildah storage and runc need root"),
    pytest.mark.timeout(3600),  # a cold build: debootstrap, pip installs of pandas and pyarrow
]

log = logging.getLogger(__name__)

USER = "10001:0"
SHELLS = ("/bin/sh", "/bin/bash", "/bin/dash", "/bin/rbash", "/usr/bin/sh", "/usr/bin/bash")
SHELLS += ("/usr/bin/dash", "/usr/bin/rbash", "/bin/busybox", "/usr/bin/busybox")
# runc's defaults (`runc spec`), as containerd's CRI also masks them.
MASKED = (
    "/proc/acpi",
    "/proc/asound",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
)
READONLY = ("/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger")


@dataclass(frozen=True)
class Run:
    returncode: int
    stdout: str
    stderr: str


@pytest.fixture(scope="module")
def images() -> Iterator[dict[str, BuiltImage]]:
    """The built images, with the cache locked for the module: another process's build
    (the test bed's) must not retag an image or rewrite an archive under these tests."""
    with locked():
        yield from _images()


def _images() -> Iterator[dict[str, BuiltImage]]:
    built = ensure_images()
    lines = [
        f"{image.name}: {image.image_id[:19]}, {megabytes(image.size)} MB, "
        f"{image.seconds:.1f}s{' (unchanged)' if image.cached else ''}"
        for image in built
    ]
    for line in lines:
        log.info("image %s", line)
        print(f"image {line}")
    try:
        yield {image.name: image for image in built}
    finally:
        buildah().sweep()  # what the tests' own buildah calls left outside the cache


def resolve_in(rootfs: Path, path: str) -> str | None:
    """`path` as the container sees it, symlinks followed inside `rootfs` (an absolute link
    such as /etc/alternatives/... must not lead to the host's file), or None if absent."""
    parts = [part for part in path.split("/") if part]
    current: list[str] = []
    hops = 0
    while parts:
        part = parts.pop(0)
        if part == ".":
            continue
        if part == "..":
            current = current[:-1]
            continue
        candidate = rootfs.joinpath(*current, part)
        if candidate.is_symlink():
            hops += 1
            if hops > 40:
                return None
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = []
            parts = [p for p in target.split("/") if p] + parts
            continue
        if not candidate.exists():
            return None
        current.append(part)
    return "/" + "/".join(current)


def shells_in(rootfs: Path) -> list[str]:
    """Every shell of the image (its /etc/shells and the usual names), as real paths."""
    listed = rootfs / "etc" / "shells"
    names = list(SHELLS)
    if listed.exists():
        names += [line.strip() for line in listed.read_text().splitlines()]
    found = {resolve_in(rootfs, name) for name in names if name.startswith("/")}
    return sorted(path for path in found if path)


def oci_config(
    rootfs: Path,
    config: dict,
    args: list[str],
    *,
    readonly: bool,
    masked: list[str],
    env: dict[str, str] | None = None,
    user: str = USER,
) -> dict:
    """An OCI runtime config like a restricted pod's: the image's env and working dir, the
    image's numeric user, no capabilities, no-new-privileges, a tmpfs /tmp. No network
    namespace: the worker reaches the test's Redis on this machine's loopback."""
    uid, _, gid = user.partition(":")
    variables = dict(item.split("=", 1) for item in config.get("Env") or [])
    variables.update(env or {})
    no_caps: dict[str, list[str]] = {
        key: [] for key in ("bounding", "effective", "inheritable", "permitted", "ambient")
    }
    return {
        "ociVersion": "1.0.2",
        "process": {
            "terminal": False,
            "user": {"uid": int(uid), "gid": int(gid or 0)},
            "args": args,
            "env": [f"{key}={value}" for key, value in variables.items()],
            "cwd": config.get("WorkingDir") or "/",
            "capabilities": no_caps,
            "noNewPrivileges": True,
        },
        "root": {"path": str(rootfs), "readonly": readonly},
        "hostname": "imgtest",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {
                "destination": "/dev",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "strictatime", "mode=755", "size=65536k"],
            },
            {
                "destination": "/dev/pts",
                "type": "devpts",
                "source": "devpts",
                "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620"],
            },
            {
                "destination": "/dev/shm",
                "type": "tmpfs",
                "source": "shm",
                "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"],
            },
            {
                "destination": "/sys",
                "type": "sysfs",
                "source": "sysfs",
                "options": ["nosuid", "noexec", "nodev", "ro"],
            },
            {
                "destination": "/tmp",
                "type": "tmpfs",
                "source": "tmpfs",
                "options": ["nosuid", "nodev", "mode=1777", "size=262144k"],
            },
        ],
        "linux": {
            "namespaces": [{"type": kind} for kind in ("pid", "ipc", "uts", "mount")],
            "maskedPaths": [*MASKED, *masked],
            "readonlyPaths": list(READONLY),
        },
    }


@contextlib.contextmanager
def mounted(image: str) -> Iterator[tuple[Path, dict]]:
    """A working container of `image`, mounted: its rootfs and the image's (Docker) config.
    Removed (and so unmounted) afterwards, by its name."""
    tool = buildah()
    name = f"taskqueue-imgtest-{uuid.uuid4().hex[:10]}"
    try:
        tool("from", "--pull=false", "--name", name, image)
        rootfs = Path(tool("mount", name, capture=True))
        inspected = json.loads(tool("inspect", "--type", "container", name, capture=True))
        config = (inspected.get("Docker") or {}).get("config") or {}
        yield rootfs, config
    finally:
        tool.remove_container(name)


class Runner:
    """runc with a state directory of its own; each run a fresh container, deleted by ID."""

    def __init__(self, work: Path) -> None:
        self.work = work
        self.state = work / "runc"

    def run(self, config: dict, timeout: float = 300) -> Run:
        container = f"taskqueue-imgtest-{uuid.uuid4().hex[:10]}"
        bundle = self.work / container
        bundle.mkdir()
        (bundle / "config.json").write_text(json.dumps(config, indent=1))
        argv = ["runc", "--root", str(self.state), "run", "--bundle", str(bundle), container]
        try:
            done = subprocess.run(
                argv,
                capture_output=True,
                text=True,
                errors="replace",
                stdin=subprocess.DEVNULL,
                timeout=timeout,
            )
            return Run(done.returncode, done.stdout, done.stderr)
        finally:
            # `runc run` deletes its container when the process exits; after a timeout the
            # container's processes are still there (killed here, by the container's ID).
            if (self.state / container).exists():
                subprocess.run(
                    ["runc", "--root", str(self.state), "delete", "--force", container],
                    capture_output=True,
                )
            shutil.rmtree(bundle)


@pytest.fixture
def runner() -> Iterator[Runner]:
    with tempfile.TemporaryDirectory(prefix="taskqueue-imgtest-") as work:
        yield Runner(Path(work))


@contextlib.contextmanager
def overlay(lower: Path, work: Path) -> Iterator[tuple[Path, Path]]:
    """A writable overlay over a read-only rootfs: (merged dir, upper dir). What a process
    writes anywhere in the root filesystem ends up in the upper dir."""
    upper, scratch, merged = work / "upper", work / "overlay-work", work / "merged"
    for directory in (upper, scratch, merged):
        directory.mkdir()
    options = f"lowerdir={lower},upperdir={upper},workdir={scratch}"
    subprocess.run(["mount", "-t", "overlay", "overlay", "-o", options, merged], check=True)
    try:
        yield merged, upper
    finally:
        subprocess.run(["umount", merged], check=True)


def written(upper: Path) -> list[str]:
    return sorted("/" + str(path.relative_to(upper)) for path in upper.rglob("*"))


PYTHON_WRITE = ["/opt/venv/bin/python", "-c", "open('/var/tmp/probe', 'w')"]
IMAGES = {
    "worker": {
        "name": worker_image,
        "entrypoint": "taskqueue-worker",
        "help": (["taskqueue-worker", "--help"], "Run an RQ worker for a TaskQueue."),
        "more": [(["taskqueue-enqueue", "--help"], "Enqueue one RQ job")],
        # A burst worker: connects to Redis, registers, finds its queue empty, warm shutdown.
        "work": (["taskqueue-worker", "--burst", "imgtest"], '"reason": "done"'),
    },
    "operator": {
        "name": operator_image,
        "entrypoint": "taskqueue-operator",
        "help": (["taskqueue-operator", "--help"], "Reconcile TaskQueue resources"),
        "more": [(["taskqueue-operator-check", "--help"], "--deployment")],
        # The operator's modules as its process loads them (kopf handlers, metrics, the
        # dashboard, recovery): a real run needs an API server, so import them and exit.
        # Only its own distribution and the contract: no worker, plugin, pandas, pyarrow.
        "work": (
            [
                "/opt/venv/bin/python",
                "-c",
                "import importlib.util, taskqueue_contract, taskqueue_operator.handlers, "
                "taskqueue_operator.metrics, taskqueue_operator.dashboard, "
                "taskqueue_operator.adapters.recovery; "
                "absent = ('pandas', 'pyarrow', 'taskqueue_worker', 'taskqueue_plugin'); "
                "found = [m for m in absent if importlib.util.find_spec(m)]; "
                "print('imports ok' if not found else f'unexpected: {found}')",
            ],
            "imports ok",
        ),
    },
}


@pytest.fixture(scope="module")
def redis_url() -> Iterator[str]:
    server = RedisServer(pod_host="127.0.0.1").start()
    try:
        yield server.url
    finally:
        server.cleanup()


@pytest.mark.parametrize("kind", ["worker", "operator"])
def test_image_config_and_archive(kind: str, images: dict[str, BuiltImage]) -> None:
    """Exec-form console-script entrypoint, a numeric non-root user, and an archive whose
    config blob is the image ID (what containerd's CRI reports as the image's ID)."""
    spec = IMAGES[kind]
    name = spec["name"]()
    built = images[name]
    with mounted(name) as (rootfs, config):
        assert config.get("Entrypoint") == [spec["entrypoint"]], config.get("Entrypoint")
        assert config.get("User") == USER
        uid = int(config["User"].split(":")[0])
        assert uid != 0
        script = rootfs / "opt" / "venv" / "bin" / spec["entrypoint"]
        shebang = script.read_text().splitlines()[0]
        assert shebang == "#!/opt/venv/bin/python", shebang  # the interpreter, not a shell
        assert resolve_in(rootfs, "/opt/venv/bin/python"), "the venv's python is not there"
        if kind == "worker":
            healthcheck = config.get("Healthcheck") or {}
            assert healthcheck.get("Test") == ["CMD", "taskqueue-worker", "--probe"]
            assert config.get("Cmd") == ["default"]
        # The build's pip.conf and the host's CA bundle were mounted, never copied in.
        assert not (rootfs / "etc" / "pip.conf").exists()
        assert not (rootfs / "root" / ".config").exists()
        assert not list((rootfs / "opt" / "venv").glob("pip.conf"))
        with mounted(f"docker.io/library/python:{python_of(rootfs)}-slim") as (base, _):
            bundle = "etc/ssl/certs/ca-certificates.crt"
            assert (rootfs / bundle).read_bytes() == (base / bundle).read_bytes()
    with tarfile.open(built.archive) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert [entry["RepoTags"] for entry in manifest] == [[name]]
        blob = archive.extractfile(manifest[0]["Config"]).read()  # type: ignore[union-attr]
    assert f"sha256:{hashlib.sha256(blob).hexdigest()}" == built.image_id
    assert built.size == built.archive.stat().st_size
    print(f"{name}: {megabytes(built.size)} MB, id {built.image_id[:19]}")


def python_of(rootfs: Path) -> str:
    target = resolve_in(rootfs, "/usr/bin/python3") or ""
    return Path(target).name.removeprefix("python")


@pytest.mark.parametrize("kind", ["worker", "operator"])
def test_runs_read_only_without_a_shell(
    kind: str, images: dict[str, BuiltImage], runner: Runner, redis_url: str
) -> None:
    """Each console script, and a run that does real work, as uid 10001 on a read-only root
    with every shell masked; the same run on a writable root writes nothing outside /tmp."""
    spec = IMAGES[kind]
    name = spec["name"]()
    assert name in images
    with mounted(name) as (rootfs, config):
        shells = shells_in(rootfs)
        assert shells, "found no shell to mask: the check would prove nothing"
        log.info("%s: masking %s", name, shells)

        def run(
            args: list[str],
            env: dict[str, str] | None = None,
            *,
            readonly: bool = True,
            root: Path = rootfs,
        ) -> Run:
            bundle = oci_config(root, config, args, readonly=readonly, masked=shells, env=env)
            result = runner.run(bundle)
            log.info(
                "%s %s: exit %s\n%s%s", name, args, result.returncode, result.stdout, result.stderr
            )
            return result

        # The harness: the root really is read-only (/var/tmp is world-writable in the
        # image), and a masked shell cannot run.
        probe = run(PYTHON_WRITE)
        assert probe.returncode != 0 and "Read-only file system" in probe.stderr, probe
        for shell in ("/bin/sh", *shells):
            denied = run([shell, "-c", "exit 0"])
            assert denied.returncode != 0, f"{shell} ran: {denied}"
        # The entrypoints.
        for args, expected in [spec["help"], *spec["more"]]:
            result = run(args)
            assert result.returncode == 0, result
            assert expected in result.stdout, result
        args, expected = spec["work"]
        env = {"REDIS_URL": redis_url, "POD_NAME": f"imgtest-{kind}"}
        result = run(args, env)
        assert result.returncode == 0, result
        assert expected in result.stdout + result.stderr, result
        # The same run on a writable root (an overlay over the image's): it writes nothing
        # anywhere but /tmp (a tmpfs), so read-only did not just turn writes into errors
        # the program swallowed. Then a write that the overlay does catch: the check can fail.
        with overlay(rootfs, runner.work) as (merged, upper):
            result = run(args, env, readonly=False, root=merged)
            assert result.returncode == 0, result
            assert expected in result.stdout + result.stderr, result
            assert written(upper) == []
            wrote = run(PYTHON_WRITE, readonly=False, root=merged)
            assert wrote.returncode == 0, wrote
            assert written(upper) == ["/var", "/var/tmp", "/var/tmp/probe"]


def test_redis_stand_in(images: dict[str, BuiltImage], runner: Runner) -> None:
    """examples/redis.yaml's image on the test bed: Debian's redis-server 7.0 under the
    official image's name, user and layout, and both commands the example runs work as its
    non-root user on a read-only root."""
    name = redis_image()
    built = images[name]
    with mounted(name) as (rootfs, config):
        assert config.get("User") == "999:999"
        assert config.get("Cmd") == ["redis-server"]
        assert config.get("WorkingDir") == "/data"
        assert (rootfs / "data").stat().st_uid == 999
        # Nothing of the build's mounts stayed behind (apt ran with the host's CA bundle).
        assert not (rootfs / "root" / ".config").exists()
        assert not list((rootfs / "var" / "lib" / "apt" / "lists").glob("*_Packages"))
        for args, expected in (
            (["redis-server", "--version"], "Redis server v=7.0"),
            (["redis-cli", "--version"], "redis-cli 7.0"),
        ):
            bundle = oci_config(rootfs, config, args, readonly=True, masked=[], user="999:999")
            result = runner.run(bundle)
            assert result.returncode == 0, result
            assert expected in result.stdout, result
    with tarfile.open(built.archive) as archive:
        manifest = json.load(archive.extractfile("manifest.json"))  # type: ignore[arg-type]
        assert [entry["RepoTags"] for entry in manifest] == [[name]]
    print(f"{name}: {megabytes(built.size)} MB, id {built.image_id[:19]}")


def test_pause_image(images: dict[str, BuiltImage], runner: Runner) -> None:
    """The sandbox image: a static /pause alone, user 65535, that runs read-only."""
    pause = next(image for image in images.values() if "/pause:" in image.name)
    with mounted(pause.name) as (rootfs, config):
        assert config.get("Entrypoint") == ["/pause"]
        assert config.get("User") == "65535:65535"
        assert sorted(path.name for path in rootfs.iterdir()) == ["pause"]
        result = runner.run(
            oci_config(
                rootfs, config, ["/pause", "-v"], readonly=True, masked=[], user="65535:65535"
            )
        )
    assert result.returncode == 0, result
    assert result.stdout.startswith("pause.c v"), result
    assert pause.name.endswith(":" + result.stdout.split()[1].removeprefix("v")), result
    print(f"{pause.name}: {megabytes(pause.size)} MB, {result.stdout.strip()}")
