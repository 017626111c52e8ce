"""The project's images, built without a Docker engine and cached, as archives for containerd.

Why: the real-node test bed runs the operator and worker images as real containers under
containerd, so it needs them as archives `ctr -n k8s.io images import` takes, named exactly as
the chart and the CRD default name them (pods then never pull). This machine has no Docker
engine and no registry, and `python:*-slim` cannot be pulled, so:

* the base the Dockerfiles' `FROM python:${PYTHON_VERSION}-slim` asks for is made locally by
  debootstrap from this machine's own Debian mirror and tagged with that name, so both
  Dockerfiles stay unchanged (and buildable by plain `docker build`);
* buildah builds them (`bud --layers`) into a storage of its own under
  `~/.cache/taskqueue-testbed/containers/` (the layer cache: an unchanged rebuild takes
  seconds), with the host's CA bundle bind-mounted into RUN steps for pip and never baked in;
* each image is exported as a docker-archive, only when its image ID changed;
* stand-ins for the third-party images the examples name (Redis: examples/redis.yaml) are
  built the same way from the same base plus a Debian package (tests/testbed/*.Dockerfile)
  and exported under the examples' names, so the examples run unchanged on the test bed;
* a pause image (the pod sandbox) is compiled from the pinned Kubernetes module's
  build/pause/linux/pause.c into a scratch image.

`python -m testbed.images` (PYTHONPATH=tests) builds what changed and prints a table. Needs
root, buildah, runc, debootstrap and gcc with a static glibc (Debian: libc6-dev). Env
TESTBED_NO_PULL=1 skips the attempt to pull the upstream base. The storage only grows (old
layers stay as the cache); remove `~/.cache/taskqueue-testbed/containers` to start afresh.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]
CHART = REPO / "charts" / "taskqueue-operator"
WORKER_DOCKERFILE = REPO / "worker-image" / "Dockerfile"
OPERATOR_DOCKERFILE = REPO / "operator" / "Dockerfile"
REDIS_DOCKERFILE = REPO / "tests" / "testbed" / "redis.Dockerfile"
REDIS_EXAMPLE = REPO / "examples" / "redis.yaml"

# What the base is made of: the cache key of its rootfs tarball.
SUITE = "bookworm"
VARIANT = "minbase"
BASE_PACKAGES = ("python3", "python3-venv", "python-is-python3", "ca-certificates")
# Removed from the rootfs (contents of these directories, or these files): what slim images
# leave out too.
STRIPPED = (
    "var/lib/apt/lists",
    "var/cache/apt",
    "var/cache/debconf/templates.dat-old",
    "var/log",
    "usr/share/doc",
    "usr/share/man",
    "usr/share/info",
    "usr/share/locale",
    "usr/share/lintian",
)
# Present and empty: runtimes bind-mount their own over these (debootstrap copied the host's
# in). buildah 1.28 leaves the targets of RUN's mounts it had to create in the layer, so
# without them in the base every RUN layer would carry three empty files.
EMPTIED = ("etc/resolv.conf", "etc/hostname", "etc/hosts")
# The environment python:*-slim images set that the Dockerfiles rely on (PATH=/opt/venv/bin:$PATH).
BASE_ENV = ("PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C.UTF-8")

# Where RUN steps find the CA bundle: the path Debian's ca-certificates (and python:*-slim)
# use, so the bind mount covers an existing file and leaves nothing behind in a layer.
CA_IN_BUILD = "/etc/ssl/certs/ca-certificates.crt"
# pip reads ~/.config/pip/pip.conf: a directory of ours is mounted over the build's HOME
# (/root, which every base has) rather than a file at /etc/pip.conf, which buildah would have
# to create as the mount target and so leave, empty, in the layer.
HOME_IN_BUILD = "/root"

PULL_TIMEOUT = 30.0  # an unreachable registry fails at once here (no DNS); never hang on one
BUILD_TIMEOUT = 3600.0  # a cold operator build (pandas, pyarrow) with the other core busy
DEBOOTSTRAP_TIMEOUT = 1800.0
PAUSE_CFLAGS = ("-static", "-O2", "-s")
PAUSE_USER = "65535:65535"  # as upstream's pause image


# Written by buildah as root outside --root/--runroot: (directory, the files it puts there).
STRAYS = (
    (Path("/var/lib/containers/cache"), ("blob-info-cache-v1.boltdb",)),
    (Path("/var/cache/containers"), ("short-name-aliases.conf.lock",)),
    (Path("/etc/containers/networks"), ("netavark.lock",)),
    (Path("/run/containers/networks"), ()),
    (Path("/run/runc"), ()),
)
STRAY_PARENTS = (Path("/var/lib/containers"), Path("/run/containers"))  # removed when empty


_HELD: dict[Path, int] = {}  # lock files this process holds: how many times


class ImageBuildError(RuntimeError):
    """A build step failed; the message ends with the tail of its output."""


@dataclass(frozen=True)
class BuiltImage:
    """One image, built and exported.

    `image_id` is buildah's image ID, `sha256:` + the digest of the image's config blob. A
    docker-archive carries that blob unchanged (as `<hex>.json`), so after `ctr images import`
    it is the CRI image ID (`crictl images`, ImageStatus `id`) too. Note that a pod's
    `status.containerStatuses[].imageID` is not it: containerd's CRI reports the image's first
    repo digest there, `<repository>@sha256:<manifest digest>`, and for an imported
    docker-archive that manifest is written by containerd at import (the archive has none).
    """

    name: str
    image_id: str
    archive: Path
    size: int  # bytes of the archive (uncompressed layers + config)
    seconds: float  # this run's build (and export) time
    cached: bool  # the image ID was the one already exported: nothing was rebuilt


@dataclass(frozen=True)
class Base:
    """The image the Dockerfiles build FROM, and the PYTHON_VERSION that names it."""

    name: str
    image_id: str
    python: str  # e.g. "3.11"
    source: str  # "debootstrap" or "pulled"
    seconds: float  # this run's time to make (or find) it
    cached: bool


@dataclass(frozen=True)
class ImageSpec:
    name: str
    dockerfile: Path


def cache_dir() -> Path:
    """`$XDG_CACHE_HOME/taskqueue-testbed` (default `~/.cache/taskqueue-testbed`)."""
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return cache / "taskqueue-testbed"


def worker_image() -> str:
    """The CRD's default worker image: what a TaskQueue without `image` runs."""
    from taskqueue_operator.api.models import DEFAULT_WORKER_IMAGE

    return DEFAULT_WORKER_IMAGE


def operator_image() -> str:
    """What the chart runs: `image.repository:(image.tag or appVersion)`, as its _helpers.tpl."""
    values = yaml.safe_load((CHART / "values.yaml").read_text())
    chart = yaml.safe_load((CHART / "Chart.yaml").read_text())
    return f"{values['image']['repository']}:{values['image'].get('tag') or chart['appVersion']}"


def image_specs() -> list[ImageSpec]:
    """The project's own images."""
    return [
        ImageSpec(worker_image(), WORKER_DOCKERFILE),
        ImageSpec(operator_image(), OPERATOR_DOCKERFILE),
    ]


def qualified(name: str) -> str:
    """An image name as containerd stores it: `redis:7.0` -> `docker.io/library/redis:7.0`."""
    first, _, rest = name.partition("/")
    if not rest:
        return f"docker.io/library/{name}"
    if "." not in first and ":" not in first and first != "localhost":
        return f"docker.io/{name}"
    return name


def redis_image() -> str:
    """The image examples/redis.yaml runs (its container `redis`), fully qualified."""
    for document in yaml.safe_load_all(REDIS_EXAMPLE.read_text()):
        if (document or {}).get("kind") not in ("StatefulSet", "Deployment"):
            continue
        for container in document["spec"]["template"]["spec"]["containers"]:
            if container["name"] == "redis":
                return qualified(container["image"])
    raise ImageBuildError(f"no container `redis` in {REDIS_EXAMPLE}")


def stand_in_specs() -> list[ImageSpec]:
    """Stand-ins for the third-party images the examples run (the test bed cannot pull)."""
    return [ImageSpec(redis_image(), REDIS_DOCKERFILE)]


def megabytes(size: int) -> str:
    return f"{size / 1e6:.1f}" if size < 10e6 else f"{size / 1e6:.0f}"


def _tail(text: str, lines: int = 40) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def run_logged(
    argv: Sequence[str],
    log: Path,
    timeout: float,
    env: dict[str, str] | None = None,
    capture: bool = False,
) -> str:
    """Run a command, its output appended to `log` as it comes (`tail -f` a build), and
    return that output; raise with its tail on failure or timeout. With `capture`, stdout is
    returned instead of logged (stderr is still logged)."""
    log.parent.mkdir(parents=True, exist_ok=True)
    with log.open("ab") as file:
        file.write(f"$ {' '.join(argv)}\n".encode())
        file.flush()
        offset = file.tell()
        try:
            done = subprocess.run(
                list(argv),
                stdout=subprocess.PIPE if capture else file,
                stderr=file,
                stdin=subprocess.DEVNULL,
                timeout=timeout,
                env=env,
            )
        except subprocess.TimeoutExpired:  # subprocess.run has killed its child (by PID)
            file.write(f"(timed out after {timeout:.0f}s)\n".encode())
            returncode, stdout = None, b""
        else:
            returncode, stdout = done.returncode, done.stdout or b""
            file.write(f"(exit {returncode})\n".encode())
    if returncode == 0 and capture:
        return stdout.decode(errors="replace")
    with log.open("rb") as file:
        file.seek(offset)
        output = file.read().decode(errors="replace") + stdout.decode(errors="replace")
    if returncode == 0:
        return output
    what = f"timed out after {timeout:.0f}s" if returncode is None else f"failed ({returncode})"
    raise ImageBuildError(
        f"`{' '.join(argv[:6])} ...` {what}; last lines of {log}:\n{_tail(output)}"
    )


class Buildah:
    """buildah on the test bed's own storage (root, runroot and driver under the cache), so
    its layer cache survives runs and nothing lands in /var/lib/containers or /run.

    `home` (storage, state, logs) and `archives` default to the cache's; the benchmark
    points them at a temporary directory to build with an empty layer cache while reusing
    the cached base rootfs, which always comes from `cache`."""

    def __init__(
        self,
        cache: Path | None = None,
        driver: str | None = None,
        home: Path | None = None,
        archives: Path | None = None,
    ) -> None:
        self.cache = cache or cache_dir()
        self.home = home or self.cache / "containers"
        self.archives = archives or self.cache / "images"
        self.root = self.home / "storage"
        self.runroot = self.home / "run"
        self.logs = (self.home / "logs") if home else self.cache / "logs"
        self.driver = driver or self._driver()
        if driver and not (self.home / "driver").exists():
            self.home.mkdir(parents=True, exist_ok=True)
            (self.home / "driver").write_text(driver + "\n")

    def _driver(self) -> str:
        """The storage driver, chosen once per storage (containers/storage refuses to switch):
        overlay where the kernel has it and the backing filesystem supports d_type (ext4, xfs:
        layers shared, not copied), else vfs (a full copy of the rootfs per layer)."""
        chosen = self.home / "driver"
        if chosen.exists():
            return chosen.read_text().strip()
        self.home.mkdir(parents=True, exist_ok=True)
        driver = "vfs"
        if "overlay" in Path("/proc/filesystems").read_text():
            try:
                store = json.loads(self._raw(["info"], "overlay")).get("store", {})
                status = store.get("GraphStatus", {})
                if store.get("GraphDriverName") == "overlay" and status.get("Supports d_type"):
                    driver = "overlay"
            except (ImageBuildError, json.JSONDecodeError):
                shutil.rmtree(self.root, ignore_errors=True)
                shutil.rmtree(self.runroot, ignore_errors=True)
        chosen.write_text(driver + "\n")
        return driver

    def argv(self, args: Sequence[str], driver: str | None = None) -> list[str]:
        return [
            "buildah",
            "--root",
            str(self.root),
            "--runroot",
            str(self.runroot),
            "--storage-driver",
            driver or self.driver,
            *args,
        ]

    def _raw(self, args: Sequence[str], driver: str, timeout: float = 120) -> str:
        return run_logged(
            self.argv(args, driver), self.logs / "buildah.log", timeout, self.env(), capture=True
        )

    def env(self) -> dict[str, str]:
        """buildah's temp files (build contexts, layer blobs on export) in the cache, not
        /var/tmp; and a containers.conf of our own (CONTAINERS_CONF) with the CNI backend
        configured under it, or buildah makes /etc/containers/networks and
        /run/containers/networks (netavark's, hard-wired for root) on every start."""
        tmp = self.home / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        conf = self.home / "containers.conf"
        text = (
            "# The test bed's buildah (testbed/images.py). RUN steps use the host's network.\n"
            "[network]\n"
            'network_backend = "cni"\n'
            f'network_config_dir = "{self.home / "cni"}"\n'
        )
        if not conf.exists() or conf.read_text() != text:
            conf.write_text(text)
        return {**os.environ, "TMPDIR": str(tmp), "CONTAINERS_CONF": str(conf)}

    def sweep(self) -> list[Path]:
        """Remove what buildah as root writes outside its storage whatever the flags (the
        blob-info cache of containers/image, the short-name alias lock), and what it wrote
        before CONTAINERS_CONF and --runtime-flag root kept it in the cache, each only when
        it holds nothing but that (another user's podman keeps its storage and networks
        there). Returns what was removed."""
        removed = []
        for directory, known in STRAYS:
            if not directory.is_dir():
                continue
            entries = {entry.name for entry in directory.iterdir()}
            if not entries <= set(known):
                continue
            for name in entries:
                (directory / name).unlink()
            with contextlib.suppress(OSError):  # not empty after all: someone else's now
                directory.rmdir()
                removed.append(directory)
        for parent in STRAY_PARENTS:
            with contextlib.suppress(OSError):
                parent.rmdir()
                removed.append(parent)
        return removed

    def __call__(
        self, *args: str, log: str = "buildah.log", timeout: float = 300, capture: bool = False
    ) -> str:
        """Run buildah; with `capture`, return its stdout (stripped) instead of logging it."""
        output = run_logged(self.argv(args), self.logs / log, timeout, self.env(), capture)
        return output.strip()

    def image_id(self, name: str) -> str | None:
        """`sha256:<config digest>` of a stored image, or None when there is none of that name."""
        done = subprocess.run(
            self.argv(["images", "--json", "--no-trunc", name]),
            capture_output=True,
            text=True,
            env=self.env(),
            timeout=120,
        )
        if done.returncode != 0:
            return None
        images = json.loads(done.stdout or "[]")
        if not images:
            return None
        found = images[0]["id"]
        return found if found.startswith("sha256:") else f"sha256:{found}"

    def prune(self, keep: set[str]) -> int:
        """Remove the images without a name that are not in `keep` (IDs or ID prefixes):
        layer caches of older builds, older bases. Without this the storage grows by about a
        gigabyte per source change (the operator's venv layers). Returns how many went."""
        listing = json.loads(self("images", "--all", "--json", "--no-trunc", capture=True) or "[]")
        kept = {prefix.removeprefix("sha256:") for prefix in keep}
        doomed = [
            image["id"].removeprefix("sha256:")
            for image in listing
            if not image.get("names")
            and not any(image["id"].removeprefix("sha256:").startswith(k) for k in kept)
        ]
        removed = 0
        while doomed:  # children before parents: retry what still had a child
            left = []
            for image in doomed:
                done = subprocess.run(
                    self.argv(["rmi", image]), capture_output=True, env=self.env(), timeout=300
                )
                if done.returncode == 0:
                    removed += 1
                else:
                    left.append(image)
            if len(left) == len(doomed):
                break
            doomed = left
        return removed

    def inspect(self, name: str) -> dict:
        """`buildah inspect --type image`: its Docker and OCIv1 configs, FromImageID..."""
        return json.loads(self("inspect", "--type", "image", name, capture=True))

    def remove_container(self, container: str) -> None:
        """Remove a working container (and unmount it), ignoring one that is already gone."""
        subprocess.run(
            self.argv(["rm", container]),
            capture_output=True,
            env=self.env(),
            timeout=120,
        )


def buildah() -> Buildah:
    """The test bed's buildah (its storage under the cache)."""
    return Buildah()


@contextlib.contextmanager
def locked(cache: Path | None = None) -> Iterator[None]:
    """One user of the cache at a time across processes (the test bed, the image test, a
    developer's run share the storage, the archives and the base): an flock on
    `<cache>/images.lock`, re-entrant within a process, so a test can hold it around
    ensure_images() and what it does with the result."""
    path = (cache or cache_dir()) / "images.lock"
    if path in _HELD:
        _HELD[path] += 1
        try:
            yield
        finally:
            _HELD[path] -= 1
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        _HELD[path] = 1
        try:
            yield
        finally:
            del _HELD[path]
            fcntl.flock(lock, fcntl.LOCK_UN)


def _read_json(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return {}


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    partial = path.with_name(path.name + ".partial")
    partial.write_text(json.dumps(data, indent=2, default=str) + "\n")
    partial.replace(path)


# --- the base ---------------------------------------------------------------------------


def dockerfile_python_version(dockerfile: Path = WORKER_DOCKERFILE) -> str:
    """The Dockerfile's `ARG PYTHON_VERSION=` default: what `docker build` would use."""
    match = re.search(r"^ARG PYTHON_VERSION=(\S+)", dockerfile.read_text(), re.M)
    if match is None:
        raise ImageBuildError(f"{dockerfile} has no ARG PYTHON_VERSION default")
    return match.group(1)


def base_name(python: str) -> str:
    return f"docker.io/library/python:{python}-slim"


def debian_mirror(suite: str = SUITE) -> tuple[str, str | None]:
    """The mirror (and keyring) this machine's apt uses for `suite`, from
    /etc/apt/sources.list and sources.list.d (one-line and deb822 formats): debootstrap
    fetches from nowhere else."""
    apt = Path("/etc/apt")
    entries: list[tuple[str, list[str], str | None]] = []  # (uri, suites, keyring)
    files = [apt / "sources.list", *sorted((apt / "sources.list.d").glob("*.list"))]
    for path in files:
        if not path.is_file():
            continue
        for line in path.read_text().splitlines():
            line = line.split("#", 1)[0].strip()
            match = re.match(
                r"deb\s+(?:\[(?P<opts>[^\]]*)\]\s+)?(?P<uri>\S+)\s+(?P<suite>\S+)", line
            )
            if match:
                opts = dict(
                    option.split("=", 1)
                    for option in (match["opts"] or "").split()
                    if "=" in option
                )
                entries.append((match["uri"], [match["suite"]], opts.get("signed-by")))
    for path in sorted((apt / "sources.list.d").glob("*.sources")):
        for stanza in re.split(r"\n\s*\n", path.read_text()):
            fields: dict[str, str] = {}
            for line in stanza.splitlines():
                if line.startswith("#") or ":" not in line or line[:1].isspace():
                    continue
                key, value = line.split(":", 1)
                fields[key.strip().lower()] = value.strip()
            if "deb" not in fields.get("types", "").split():
                continue
            if fields.get("enabled", "yes").lower() == "no":
                continue
            for uri in fields.get("uris", "").split():
                entries.append((uri, fields.get("suites", "").split(), fields.get("signed-by")))
    for uri, suites, keyring in entries:
        if suite in suites:
            return uri, keyring if keyring and Path(keyring).is_file() else None
    raise ImageBuildError(f"no deb source for {suite} in /etc/apt/sources.list(.d)")


def base_key(arch: str) -> str:
    """What makes the base rootfs: suite, variant, packages, what is stripped, architecture
    (not the mirror: any mirror of the suite serves the same packages)."""
    made_of = {
        "suite": SUITE,
        "variant": VARIANT,
        "packages": sorted(BASE_PACKAGES),
        "stripped": list(STRIPPED),
        "emptied": list(EMPTIED),
        "arch": arch,
    }
    return hashlib.sha256(json.dumps(made_of, sort_keys=True).encode()).hexdigest()[:16]


def _architecture() -> str:
    return subprocess.run(
        ["dpkg", "--print-architecture"], capture_output=True, text=True, check=True
    ).stdout.strip()


def _mounts_under(directory: Path) -> list[str]:
    """Mount points at or below `directory`, deepest first (debootstrap mounts /proc, /sys
    in its target; a killed run leaves them, and rmtree must never walk into them)."""
    prefix = str(directory.resolve())
    points = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].encode().decode("unicode_escape")  # \040 for a space
        if point == prefix or point.startswith(prefix + "/"):
            points.append(point)
    return sorted(points, key=len, reverse=True)


def remove_tree(directory: Path) -> None:
    """rmtree that first unmounts what is mounted below (never deletes through a mount)."""
    if not directory.exists():
        return
    for point in _mounts_under(directory):
        subprocess.run(["umount", "-l", point], check=False, capture_output=True)
    if _mounts_under(directory):
        raise ImageBuildError(f"could not unmount what is mounted under {directory}")
    shutil.rmtree(directory)


def _strip(rootfs: Path) -> None:
    for relative in STRIPPED:
        path = rootfs / relative
        if path.is_dir() and not path.is_symlink():
            for child in path.iterdir():
                if child.is_dir() and not child.is_symlink():
                    shutil.rmtree(child)
                else:
                    child.unlink()
        elif path.exists() or path.is_symlink():
            path.unlink()
    for relative in EMPTIED:
        path = rootfs / relative
        path.unlink(missing_ok=True)
        path.write_bytes(b"")
        path.chmod(0o644)


def _python_of(rootfs: Path) -> str:
    """`3.11` from the rootfs's /usr/bin/python3 -> python3.11."""
    target = os.readlink(rootfs / "usr/bin/python3")
    match = re.fullmatch(r"python(3\.\d+)", Path(target).name)
    if match is None:
        raise ImageBuildError(f"cannot tell the Python version from python3 -> {target}")
    return match.group(1)


def base_tarball(cache: Path | None = None) -> tuple[Path, dict]:
    """The base rootfs as a tarball in the cache, made by debootstrap when it is not there
    (about a minute). Returns the tarball and its metadata (python version, mirror...)."""
    cache = cache or cache_dir()
    arch = _architecture()
    key = base_key(arch)
    directory = cache / "base"
    tarball = directory / f"debian-{SUITE}-{arch}-{key}.tar"
    meta_file = tarball.with_suffix(".json")
    meta = _read_json(meta_file)
    if tarball.exists() and meta.get("key") == key:
        return tarball, meta
    directory.mkdir(parents=True, exist_ok=True)
    for stale in directory.glob("*.partial*"):  # what an interrupted run left
        if stale.is_dir():
            remove_tree(stale)
        else:
            stale.unlink()
    mirror, keyring = debian_mirror()
    rootfs = directory / f"rootfs-{key}.partial"
    started = time.monotonic()
    print(f"making the base: debootstrap {SUITE} from {mirror} (about a minute)", flush=True)
    argv = [
        "debootstrap",
        f"--variant={VARIANT}",
        f"--include={','.join(BASE_PACKAGES)}",
        f"--arch={arch}",
        *([f"--keyring={keyring}"] if keyring else []),
        SUITE,
        str(rootfs),
        mirror,
    ]
    try:
        run_logged(argv, cache / "logs" / "debootstrap.log", DEBOOTSTRAP_TIMEOUT)
        _strip(rootfs)
        python = _python_of(rootfs)
        partial = tarball.with_name(tarball.name + ".partial")
        run_logged(
            ["tar", "--numeric-owner", "--xattrs", "-C", str(rootfs), "-cf", str(partial), "."],
            cache / "logs" / "debootstrap.log",
            600,
        )
        partial.replace(tarball)
    finally:
        remove_tree(rootfs)
    meta = {
        "key": key,
        "suite": SUITE,
        "variant": VARIANT,
        "packages": list(BASE_PACKAGES),
        "arch": arch,
        "mirror": mirror,
        "python": python,
        "seconds": round(time.monotonic() - started, 1),
        "bytes": tarball.stat().st_size,
    }
    _write_json(meta_file, meta)
    for old in directory.glob(f"debian-{SUITE}-{arch}-*"):  # made of something else
        if old not in (tarball, meta_file):
            old.unlink()
    return tarball, meta


def _try_pull(tool: Buildah, name: str) -> bool:
    """Pull the upstream base, giving up after PULL_TIMEOUT (the child is killed by PID)."""
    try:
        tool("pull", "--retry", "0", "--policy", "missing", name, timeout=PULL_TIMEOUT)
    except ImageBuildError as error:
        lines = str(error).splitlines()
        reason = next((line for line in lines if line.startswith("Error")), lines[-1])
        print(f"cannot pull {name}: {reason[:200]}", flush=True)
        return False
    return True


def ensure_base(tool: Buildah | None = None) -> Base:
    """The base image in buildah's storage, tagged as the Dockerfiles' FROM names it.

    Made before: found by the ID recorded in the cache (no pull attempt, no debootstrap).
    Otherwise the upstream `python:<Dockerfile default>-slim` is tried first (it fails at
    once where no registry resolves), then the debootstrap tarball is imported (made, or
    reused from the cache) and tagged `python:<its Python>-slim`."""
    tool = tool or buildah()
    started = time.monotonic()
    state_file = tool.home / "base.json"
    state = _read_json(state_file)
    arch = _architecture()
    wanted_key = base_key(arch)
    current = state.get("source") == "pulled" or state.get("key") == wanted_key
    if current and state.get("name") and tool.image_id(state["name"]) == state.get("image_id"):
        return Base(
            state["name"],
            state["image_id"],
            state["python"],
            state["source"],
            time.monotonic() - started,
            True,
        )
    upstream_python = dockerfile_python_version()
    upstream = base_name(upstream_python)
    if not os.environ.get("TESTBED_NO_PULL") and _try_pull(tool, upstream):
        image_id = tool.image_id(upstream) or ""
        _write_json(
            state_file,
            {"name": upstream, "image_id": image_id, "python": upstream_python, "source": "pulled"},
        )
        return Base(
            upstream, image_id, upstream_python, "pulled", time.monotonic() - started, False
        )
    tarball, meta = base_tarball(tool.cache)
    name = base_name(meta["python"])
    container = f"taskqueue-testbed-base-{os.getpid()}"
    print(f"importing {tarball.name} as {name}", flush=True)
    try:
        tool("from", "--name", container, "scratch")
        tool("add", container, str(tarball), "/", timeout=900)
        config = ["config", "--cmd", '["python3"]']
        for variable in BASE_ENV:
            config += ["--env", variable]
        tool(*config, container)
        tool("commit", "--format", "docker", "--identity-label=false", "--rm", container, name)
    finally:
        tool.remove_container(container)
    image_id = tool.image_id(name)
    if image_id is None:
        raise ImageBuildError(f"{name} is not in buildah's storage after the import")
    _write_json(
        state_file,
        {
            "name": name,
            "image_id": image_id,
            "python": meta["python"],
            "source": "debootstrap",
            "key": wanted_key,
            "tarball": str(tarball),
        },
    )
    return Base(name, image_id, meta["python"], "debootstrap", time.monotonic() - started, False)


# --- the images -------------------------------------------------------------------------


def host_ca_bundle() -> Path:
    """The host's CA bundle: it has the local CA this network re-signs TLS with, which the
    certifi bundle of pip inside the image lacks."""
    paths = ssl.get_default_verify_paths()
    candidates = [
        os.environ.get("PIP_CERT"),
        os.environ.get("SSL_CERT_FILE"),
        os.environ.get("REQUESTS_CA_BUNDLE"),
        "/etc/ssl/certs/ca-certificates.crt",
        "/etc/pki/tls/certs/ca-bundle.crt",
        paths.cafile,
        paths.openssl_cafile,
    ]
    for candidate in candidates:
        if candidate and Path(candidate).is_file():
            return Path(candidate).resolve()
    raise ImageBuildError("no CA bundle on this machine for pip inside the builds")


def build_mounts(cache: Path) -> list[str]:
    """`-v` arguments for RUN steps: the host's CA bundle over the base's, and a HOME with a
    pip.conf naming it, both read-only. Mounted over paths the base has, so neither leaves
    anything in a layer (the test compares the images' bundle with the base's)."""
    home = cache / "build" / "home"
    pip_conf = home / ".config" / "pip" / "pip.conf"
    pip_conf.parent.mkdir(parents=True, exist_ok=True)
    text = f"[global]\ncert = {CA_IN_BUILD}\n"
    if not pip_conf.exists() or pip_conf.read_text() != text:
        pip_conf.write_text(text)
    return [
        "-v",
        f"{host_ca_bundle()}:{CA_IN_BUILD}:ro",
        "-v",
        f"{home}:{HOME_IN_BUILD}:ro",
    ]


def archive_path(archives: Path, name: str) -> Path:
    slug = re.sub(r"[^A-Za-z0-9_.-]+", "_", name.split("/", 1)[-1])
    return archives / f"{slug}.tar"


def export(tool: Buildah, name: str, image_id: str) -> tuple[Path, bool]:
    """The image as a docker-archive named `name`, written only when its ID changed.
    Returns the archive and whether it was already there."""
    archive = archive_path(tool.archives, name)
    meta_file = archive.with_suffix(".json")
    meta = _read_json(meta_file)
    if archive.exists() and meta.get("image_id") == image_id and meta.get("name") == name:
        return archive, True
    archive.parent.mkdir(parents=True, exist_ok=True)
    partial = archive.with_name(archive.name + ".partial")
    partial.unlink(missing_ok=True)  # docker-archive refuses to write into an existing file
    tool("push", "--quiet", image_id, f"docker-archive:{partial}:{name}", timeout=900)
    partial.replace(archive)
    _write_json(meta_file, {"name": name, "image_id": image_id, "bytes": archive.stat().st_size})
    return archive, False


# bud's step results: `--> Using cache <full id>` or `--> <short id>` (a new layer).
STEP_IMAGE = re.compile(r"^--> (?:Using cache )?([0-9a-f]{11,64})$", re.M)


# `COPY [--flags] SRC... DEST` from the build context (not `--from=` a stage).
COPY_LINE = re.compile(r"^\s*COPY\s+(?!.*--from)(?:--\S+\s+)*(.+?)\s+\S+\s*$", re.M | re.I)


def context_fingerprint(spec: ImageSpec, base: Base) -> str:
    """What a build's result depends on: the Dockerfile, the base, and every file of the
    context its COPY lines take (bytecode caches aside). Equal fingerprints make the same
    image, so the test bed can skip buildah (seconds per image per start) when nothing
    changed since the archive was written."""
    digest = hashlib.sha256(spec.dockerfile.read_bytes())
    digest.update(base.image_id.encode())
    text = re.sub(r"\\\n", " ", spec.dockerfile.read_text())
    sources = sorted({s for m in COPY_LINE.finditer(text) for s in m.group(1).split()})
    for source in sources:
        path = REPO / source
        files = sorted(path.rglob("*")) if path.is_dir() else [path]
        for file in files:
            if file.is_file() and "__pycache__" not in file.parts and file.suffix != ".pyc":
                digest.update(str(file.relative_to(REPO)).encode() + b"\0")
                digest.update(file.read_bytes())
    return digest.hexdigest()


def recorded_layers(image: BuiltImage) -> set[str] | None:
    """The layer-cache images the build of `image`'s archive used, if it recorded them."""
    layers = _read_json(image.archive.with_suffix(".json")).get("layers")
    return set(layers) if isinstance(layers, list) else None


def unchanged_build(tool: Buildah, spec: ImageSpec, fingerprint: str) -> BuiltImage | None:
    """The archive of an earlier build from the same fingerprint, if it is still there."""
    archive = archive_path(tool.archives, spec.name)
    meta = _read_json(archive.with_suffix(".json"))
    if archive.exists() and meta.get("fingerprint") == fingerprint and meta.get("image_id"):
        return BuiltImage(spec.name, meta["image_id"], archive, archive.stat().st_size, 0.0, True)
    return None


def build_image(
    tool: Buildah, spec: ImageSpec, base: Base, used: set[str] | None = None
) -> BuiltImage:
    """`buildah bud --layers` of one Dockerfile from the repository root, then its archive.

    Always runs bud: with the layer cache an unchanged image is a few seconds and comes out
    with the same ID (then the archive is not rewritten). Adds the IDs of the layer-cache
    images this build used or made to `used`, and records them with the archive (a later
    run that skips this build keeps them: `recorded_layers`)."""
    started = time.monotonic()
    iidfile = tool.home / "tmp" / f"iid-{os.getpid()}"
    log = f"build-{archive_path(tool.archives, spec.name).stem}.log"
    print(f"building {spec.name} ({spec.dockerfile.relative_to(REPO)})", flush=True)
    output = tool(
        "bud",
        "--layers",
        "--force-rm",
        "--runtime",
        "runc",
        "--network",
        "host",
        "--pull=false",
        "--format",
        "docker",  # keeps HEALTHCHECK, as `docker build` does
        "--identity-label=false",
        "--runtime-flag",
        f"root={tool.home / 'runc'}",  # runc's state; its default is /run/runc
        "--build-arg",
        f"PYTHON_VERSION={base.python}",
        *build_mounts(tool.cache),
        "--iidfile",
        str(iidfile),
        "-f",
        str(spec.dockerfile),
        "-t",
        spec.name,
        str(REPO),
        log=log,
        timeout=BUILD_TIMEOUT,
    )
    image_id = iidfile.read_text().strip()
    iidfile.unlink()
    if not image_id.startswith("sha256:"):
        image_id = f"sha256:{image_id}"
    layers = {*STEP_IMAGE.findall(output), image_id}
    if used is not None:
        used.update(layers)
    archive, cached = export(tool, spec.name, image_id)
    meta_file = archive.with_suffix(".json")
    fingerprint = context_fingerprint(spec, base)
    _write_json(
        meta_file, {**_read_json(meta_file), "fingerprint": fingerprint, "layers": sorted(layers)}
    )
    return BuiltImage(
        spec.name, image_id, archive, archive.stat().st_size, time.monotonic() - started, cached
    )


# --- the pause image --------------------------------------------------------------------


def kubernetes_module_dir() -> Path:
    """The pinned k8s.io/kubernetes module in the Go module cache (downloaded by the test
    bed's tool build; else `go mod download` fetches it from the proxy)."""
    from testbed.build import TOOLS, find_go, kubernetes_version

    version = kubernetes_version()
    modcache = os.environ.get("GOMODCACHE")
    go: str | None = None
    if not modcache:
        go = find_go()
        modcache = subprocess.run(
            [go, "env", "GOMODCACHE"], capture_output=True, text=True, check=True
        ).stdout.strip()
    directory = Path(modcache) / f"k8s.io/kubernetes@{version}"
    if directory.is_dir():
        return directory
    go = go or find_go()
    done = subprocess.run(
        [go, "mod", "download", "-json", f"k8s.io/kubernetes@{version}"],
        cwd=TOOLS,
        capture_output=True,
        text=True,
        timeout=900,
    )
    if done.returncode != 0:
        raise ImageBuildError(f"go mod download k8s.io/kubernetes@{version}:\n{_tail(done.stderr)}")
    return Path(json.loads(done.stdout)["Dir"])


def pause_image() -> str:
    """`registry.k8s.io/pause:<TAG>` with the TAG of the pinned module's build/pause/Makefile
    (3.10.1 for v1.34.4; kubeadm's PauseVersion agrees). The kubelet of 1.34 has no default of
    its own (its --pod-infra-container-image is deprecated and unset): the sandbox image is the
    CRI's `sandbox_image` setting, and containerd 1.6 defaults that to pause:3.6, so a node
    config must set it to this name."""
    makefile = kubernetes_module_dir() / "build" / "pause" / "Makefile"
    match = re.search(r"^TAG \?= (\S+)", makefile.read_text(), re.M)
    if match is None:
        raise ImageBuildError(f"no TAG in {makefile}")
    return f"registry.k8s.io/pause:{match.group(1)}"


def ensure_pause(tool: Buildah) -> BuiltImage:
    """The pause binary (a static build of pause.c) alone in a scratch image, entrypoint
    /pause, user 65535. Rebuilt only when pause.c, the flags or the compiler change."""
    started = time.monotonic()
    name = pause_image()
    source = kubernetes_module_dir() / "build" / "pause" / "linux" / "pause.c"
    gcc = shutil.which("gcc")
    if gcc is None:
        raise ImageBuildError("no gcc to build the pause binary (Debian: gcc, libc6-dev)")
    compiler = subprocess.run([gcc, "--version"], capture_output=True, text=True).stdout
    tag = name.rsplit(":", 1)[1]
    flags = [*PAUSE_CFLAGS, f"-DVERSION=v{tag}"]
    digest = hashlib.sha256(source.read_bytes())
    digest.update("\0".join([*flags, compiler, name, PAUSE_USER]).encode())
    fingerprint = digest.hexdigest()[:16]
    state_file = tool.home / "pause.json"
    state = _read_json(state_file)
    image_id = tool.image_id(name)
    if not (state.get("fingerprint") == fingerprint and image_id == state.get("image_id")):
        binary = tool.cache / "pause" / f"pause-{fingerprint}"
        binary.parent.mkdir(parents=True, exist_ok=True)
        if not binary.exists():
            partial = binary.with_name(binary.name + ".partial")
            run_logged(
                [gcc, *flags, "-o", str(partial), str(source)],
                tool.logs / "pause.log",
                300,
            )
            partial.replace(binary)
        container = f"taskqueue-testbed-pause-{os.getpid()}"
        try:
            tool("from", "--name", container, "scratch")
            tool("copy", "--chmod", "0755", container, str(binary), "/pause")
            tool("config", "--entrypoint", '["/pause"]', "--user", PAUSE_USER, container)
            # A fixed timestamp: the same binary gives the same image ID, and the same archive.
            tool(
                "commit",
                "--format",
                "docker",
                "--identity-label=false",
                "--timestamp",
                "0",
                "--rm",
                container,
                name,
            )
        finally:
            tool.remove_container(container)
        image_id = tool.image_id(name)
        if image_id is None:
            raise ImageBuildError(f"{name} is not in buildah's storage after its commit")
        _write_json(state_file, {"fingerprint": fingerprint, "image_id": image_id, "name": name})
    archive, cached = export(tool, name, image_id)
    return BuiltImage(
        name, image_id, archive, archive.stat().st_size, time.monotonic() - started, cached
    )


# --- all of it --------------------------------------------------------------------------


def build_all(tool: Buildah | None = None) -> tuple[Base, list[BuiltImage]]:
    """The base, then the worker, operator, stand-in (Redis) and pause images, each rebuilt
    only as needed."""
    tool = tool or buildah()
    for name in ("buildah", "runc"):
        if shutil.which(name) is None:
            raise ImageBuildError(f"{name} is not installed (Debian: apt-get install {name})")
    with locked(tool.cache):
        try:
            base = ensure_base(tool)
            used: set[str] = set()
            complete = True  # `used` holds the layers of every current image
            built_any = False
            images = []
            for spec in [*image_specs(), *stand_in_specs()]:
                known = unchanged_build(tool, spec, context_fingerprint(spec, base))
                if known is None:
                    images.append(build_image(tool, spec, base, used))
                    built_any = True
                    continue
                images.append(known)
                layers = recorded_layers(known)
                if layers is None:  # archived by an older version, which did not record them
                    complete = False
                else:
                    used |= layers
            images.append(ensure_pause(tool))
            # Only after the builds ran and succeeded, and when `used` is the whole current
            # cache (skipped builds count with the layers their archive recorded).
            if built_any and complete:
                current = used | {base.image_id} | {image.image_id for image in images}
                if pruned := tool.prune(current):
                    print(f"removed {pruned} images of older builds from the layer cache")
        finally:
            tool.sweep()
    for image in images:
        print(
            f"{image.name}: {image.image_id[:19]} {megabytes(image.size)} MB "
            f"{image.seconds:.1f}s{' (unchanged)' if image.cached else ''}",
            flush=True,
        )
    return base, images


def ensure_images() -> list[BuiltImage]:
    """What the test bed calls: the worker, operator, stand-in (Redis) and pause images as
    docker-archives for `ctr -n k8s.io images import`, in that order, rebuilt only when
    something changed."""
    return build_all()[1]


def main() -> int:
    try:
        base, images = build_all()
    except ImageBuildError as error:
        print(error, file=sys.stderr)
        return 1
    rows = [("image", "id", "size MB", "build s", "cached")]
    rows += [
        (
            image.name,
            image.image_id.removeprefix("sha256:")[:12],
            megabytes(image.size),
            f"{image.seconds:.1f}",
            "yes" if image.cached else "no",
        )
        for image in images
    ]
    widths = [max(len(row[column]) for row in rows) for column in range(len(rows[0]))]
    for row in rows:
        print("  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)))
    made = "found" if base.cached else f"made ({base.source})"
    print(f"base {base.name} {made} in {base.seconds:.1f}s")
    print(f"archives in {cache_dir() / 'images'}; buildah storage in {buildah().home}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
