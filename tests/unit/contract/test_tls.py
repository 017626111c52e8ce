"""rediss:// URLs with TLS files: what the operator, workers and the plugin connect with."""

from __future__ import annotations

import stat
import tempfile
from pathlib import Path

import pytest
from redis.connection import SSLConnection, parse_url
from taskqueue_contract.tls import (
    TLSConfigError,
    url_with_tls,
    url_with_tls_files,
    url_with_tls_from_env,
    write_private,
)
from taskqueue_worker import config


def test_files_land_in_the_query_that_redis_py_hands_to_its_ssl_connection() -> None:
    files = {"ssl_ca_certs": Path("/t/ca.pem"), "ssl_certfile": Path("/t/c.pem")}
    url = url_with_tls_files("rediss://:pw@redis:6380/2", files)
    parsed = parse_url(url)
    assert parsed["connection_class"] is SSLConnection
    assert (parsed["ssl_ca_certs"], parsed["ssl_certfile"]) == ("/t/ca.pem", "/t/c.pem")
    assert (parsed["password"], parsed["db"]) == ("pw", 2)


def test_an_existing_query_is_kept() -> None:
    url = url_with_tls_files(
        "rediss://r:6380/0?health_check_interval=5", {"ssl_ca_certs": Path("/ca")}
    )
    assert url == "rediss://r:6380/0?health_check_interval=5&ssl_ca_certs=%2Fca"


def test_no_material_leaves_any_url_alone() -> None:
    assert url_with_tls_files("redis://r:6379/0", {}) == "redis://r:6379/0"


@pytest.mark.parametrize("url", ["redis://r:6379/0", "unix:///run/redis.sock"])
def test_material_for_a_url_without_tls_is_an_error(url: str) -> None:
    with pytest.raises(TLSConfigError, match=r"URL is (redis|unix)://"):
        url_with_tls_files(url, {"ssl_ca_certs": Path("/ca")})


def test_pems_are_written_once_privately_and_named_by_content(tmp_path: Path) -> None:
    first = write_private("-----BEGIN CERTIFICATE-----\nA\n", tmp_path / "tls")
    again = write_private("-----BEGIN CERTIFICATE-----\nA\n", tmp_path / "tls")
    rotated = write_private("-----BEGIN CERTIFICATE-----\nB\n", tmp_path / "tls")
    assert first == again != rotated
    assert stat.S_IMODE(first.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "tls").stat().st_mode) == 0o700
    assert first.read_text().endswith("A\n")
    assert not list((tmp_path / "tls").glob("*.tmp"))


def test_blank_pems_are_ignored(tmp_path: Path) -> None:
    url = url_with_tls("rediss://r/0", {"ssl_ca_certs": "  ", "ssl_certfile": ""}, tmp_path)
    assert url == "rediss://r/0"


def test_the_environment_names_the_operator_sets(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))  # gettempdir() caches TMPDIR
    env = {
        "REDIS_URL": "rediss://redis:6380/0",
        "REDIS_TLS_CA_CERT": "ca-pem",
        "REDIS_TLS_CLIENT_CERT": "cert-pem",
        "REDIS_TLS_CLIENT_KEY": "key-pem",
    }
    parsed = parse_url(config.redis_url(env))
    assert Path(parsed["ssl_ca_certs"]).read_text() == "ca-pem"
    assert Path(parsed["ssl_certfile"]).read_text() == "cert-pem"
    assert Path(parsed["ssl_keyfile"]).read_text() == "key-pem"
    assert Path(parsed["ssl_keyfile"]).parent.parent == tmp_path
    assert url_with_tls_from_env("redis://r/0", {}) == "redis://r/0"


def test_certificates_with_a_plain_url_are_a_config_error() -> None:
    env = {"REDIS_URL": "redis://redis:6379/0", "REDIS_TLS_CA_CERT": "ca-pem"}
    with pytest.raises(config.ConfigError, match=r"REDIS_TLS_.*URL is redis://"):
        config.redis_url(env)


def test_secret_refs_name_every_key_the_spec_points_at(tmp_path: Path) -> None:
    from taskqueue_contract.tls import URL, resolve_url, secret_refs

    spec = {
        "urlFrom": {"secretKeyRef": {"name": "redis", "key": "url"}},
        "tls": {
            "caFrom": {"secretKeyRef": {"name": "ca", "key": "ca.crt"}},
            "clientCertificateSecretRef": {"name": "client"},
        },
    }
    inline, refs = secret_refs(spec)
    assert inline is None
    assert [(r.name, r.key, r.role) for r in refs] == [
        ("redis", "url", URL),
        ("ca", "ca.crt", "ssl_ca_certs"),
        ("client", "tls.crt", "ssl_certfile"),
        ("client", "tls.key", "ssl_keyfile"),
    ]
    values = {ref: f"PEM {ref.key}" for ref in refs}
    values[refs[0]] = " rediss://redis:6380/0\n"
    url = resolve_url(inline, values, tmp_path)
    assert url.startswith("rediss://redis:6380/0?ssl_ca_certs=")
    assert parse_url(url)["ssl_keyfile"].startswith(str(tmp_path))


def test_an_inline_url_needs_no_secret() -> None:
    from taskqueue_contract.tls import resolve_url, secret_refs

    inline, refs = secret_refs({"url": "redis://r:6379/0"})
    assert (inline, refs) == ("redis://r:6379/0", ())
    assert resolve_url(inline, {}) == "redis://r:6379/0"
    with pytest.raises(ValueError, match="neither url nor urlFrom"):
        resolve_url(None, {})
