"""Test certificates made with openssl: a CA, and certificates it signs."""

from __future__ import annotations

import subprocess
from pathlib import Path

DAYS = "30"
LOOPBACK_SAN = "subjectAltName=IP:127.0.0.1,DNS:localhost"


def openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def make_ca(directory: Path, name: str = "ca", subject: str = "/CN=taskqueue-test-ca") -> Path:
    """`<name>.crt` and `<name>.key`: a self-signed CA. Returns the certificate."""
    directory.mkdir(parents=True, exist_ok=True)
    openssl(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.crt", "-days", DAYS, "-subj", subject,
        cwd=directory,
    )  # fmt: skip
    return directory / f"{name}.crt"


def issue(
    directory: Path, name: str, subject: str, extension: str | None = None, ca: str = "ca"
) -> tuple[Path, Path]:
    """`<name>.crt`/`<name>.key` signed by `<ca>.crt`; `extension` is an openssl ext line
    (e.g. a subjectAltName). Returns (certificate, key)."""
    openssl(
        "req", "-newkey", "rsa:2048", "-nodes",
        "-keyout", f"{name}.key", "-out", f"{name}.csr", "-subj", subject,
        cwd=directory,
    )  # fmt: skip
    signing = [
        "x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
        "-CAcreateserial", "-out", f"{name}.crt", "-days", DAYS,
    ]  # fmt: skip
    if extension:
        (directory / f"{name}.ext").write_text(extension + "\n")
        signing += ["-extfile", f"{name}.ext"]
    openssl(*signing, cwd=directory)
    return directory / f"{name}.crt", directory / f"{name}.key"
