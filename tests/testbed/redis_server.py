"""A real redis-server (Debian's package) on a free loopback port, stopped by PID.

Also on the address pods reach this machine at, when that is not 127.0.0.1 (kind: see
`testbed.pod_network`); the tests themselves always talk to 127.0.0.1."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import redis

from testbed.certs import LOOPBACK_SAN, issue, make_ca
from testbed.pod_network import LOOPBACK, is_loopback, pod_redis_host
from testbed.ports import free_port
from testbed.processes import stop_process


@dataclass
class RedisTLS:
    """A test CA, Redis's serving certificate (127.0.0.1 and the pods' address of this
    machine) and a client certificate."""

    directory: Path
    require_client_certificate: bool = True
    pod_host: str = field(default_factory=pod_redis_host)

    def __post_init__(self) -> None:
        make_ca(self.directory, subject="/CN=taskqueue-redis-test-ca")
        names = LOOPBACK_SAN + ("" if self.pod_host == LOOPBACK else f",IP:{self.pod_host}")
        issue(self.directory, "redis", "/CN=redis", names)
        issue(self.directory, "client", "/CN=taskqueue-client")

    def file(self, name: str) -> Path:
        return self.directory / name

    def pem(self, name: str) -> str:
        return self.file(name).read_text()

    def server_args(self, port: int) -> list[str]:
        return [
            "--port", "0", "--tls-port", str(port),
            "--tls-cert-file", str(self.file("redis.crt")),
            "--tls-key-file", str(self.file("redis.key")),
            "--tls-ca-cert-file", str(self.file("ca.crt")),
            "--tls-auth-clients", "yes" if self.require_client_certificate else "no",
        ]  # fmt: skip

    def client_kwargs(self) -> dict[str, str]:
        return {
            "ssl_ca_certs": str(self.file("ca.crt")),
            "ssl_certfile": str(self.file("client.crt")),
            "ssl_keyfile": str(self.file("client.key")),
        }


@dataclass
class RedisServer:
    """One redis-server process owned by the caller.

    `extra_args` are appended to the command line (e.g. ``["--appendonly", "yes"]``).
    The server keeps its data dir across `stop()`/`start()` so a restart keeps AOF data.
    """

    port: int = field(default_factory=free_port)
    extra_args: list[str] = field(default_factory=list)
    data_dir: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="tq-redis-")))
    password: str | None = None
    tls: RedisTLS | None = None
    """Serve TLS only (rediss://) on `port`, with the test CA's certificates."""
    pod_host: str = field(default_factory=pod_redis_host)
    """Where the cluster's pods reach this server (`pod_url`); the tests use `url`."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return self._url(LOOPBACK)

    @property
    def pod_url(self) -> str:
        """The URL for Secrets: what workers, CronJob pods and the operator connect to."""
        return self._url(self.pod_host)

    def _url(self, host: str) -> str:
        auth = f":{self.password}@" if self.password else ""
        scheme = "rediss" if self.tls else "redis"
        return f"{scheme}://{auth}{host}:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis.from_url(self.url, **(self.tls.client_kwargs() if self.tls else {}))

    def start(self, timeout: float = 10.0) -> RedisServer:
        binary = shutil.which("redis-server")
        if binary is None:
            raise RuntimeError("redis-server not found: apt-get install redis-server")
        self.data_dir.mkdir(parents=True, exist_ok=True)
        listen = self.tls.server_args(self.port) if self.tls else ["--port", str(self.port)]
        command = [
            binary,
            *listen,
            "--bind",
            *dict.fromkeys([LOOPBACK, self.pod_host]),
            "--dir",
            str(self.data_dir),
            "--save",
            "",
            # Without a password, protected mode refuses every client but 127.0.0.1: pods
            # on kind come from its bridge. Only the two addresses above listen.
            "--protected-mode",
            "yes" if is_loopback(self.pod_host) else "no",
            *(["--requirepass", self.password] if self.password else []),
            *self.extra_args,
        ]
        log = open(self.data_dir / "redis.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(
                    f"redis-server exited: {(self.data_dir / 'redis.log').read_text()}"
                )
            try:
                if self.client().ping():
                    return self
            except redis.exceptions.ConnectionError:
                time.sleep(0.02)
        self.stop()  # never leave a server behind when start() fails
        raise TimeoutError(f"redis-server on port {self.port} did not answer in {timeout}s")

    def stop(self) -> None:
        if self.process is not None:
            stop_process(self.process, timeout=10)
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.data_dir, ignore_errors=True)
