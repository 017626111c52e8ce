"""Job data is read without importing or running application code."""

from __future__ import annotations

import datetime as dt
import json
import os
import pickle
import uuid
import zlib
from decimal import Decimal
from pathlib import Path

from taskqueue_contract import job_data as safe_pickle


class Order:
    """Stands for an application class (the plugin never imports its module)."""

    def __init__(self, number: int) -> None:
        self.number = number


class Exploit:
    def __init__(self, path: str) -> None:
        self.path = path

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (os.mkdir, (self.path,))


def rq_data(func: str, args: tuple[object, ...], kwargs: dict[str, object], protocol: int) -> bytes:
    """What RQ stores in a job hash's `data`: zlib(pickle((func, instance, args, kwargs)))."""
    return zlib.compress(pickle.dumps((func, None, args, kwargs), protocol=protocol))


def test_function_name_from_every_pickle_protocol() -> None:
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        data = rq_data("tasks.ingest.fetch_candles", (Order(1),), {"days": 1}, protocol)
        assert safe_pickle.function_name(data) == "tasks.ingest.fetch_candles", protocol


def test_function_name_of_json_serializer_and_garbage() -> None:
    data = json.dumps(["tasks.run", None, [1], {}]).encode()
    assert safe_pickle.function_name(data) == "tasks.run"
    assert safe_pickle.function_name(b"\x80\x05garbage") is None
    assert safe_pickle.function_name(b"") is None
    assert safe_pickle.function_name(None) is None


def test_plain_values_load_as_themselves() -> None:
    when = dt.datetime(2024, 5, 1, 10, tzinfo=dt.UTC)
    ident = uuid.UUID("12345678-1234-5678-1234-567812345678")
    value = ("f", None, (when, ident, Decimal("1.5"), {1, 2}, b"x", 3j), {"k": [1, 2]})
    for protocol in range(2, pickle.HIGHEST_PROTOCOL + 1):
        decoded = safe_pickle.loads(pickle.dumps(value, protocol=protocol))
        assert decoded.error is None
        assert decoded.unresolved == set()
        assert decoded.value == value


def test_application_classes_become_named_placeholders() -> None:
    decoded = safe_pickle.loads(pickle.dumps(("f", None, (Order(42),), {"fn": Order})))
    assert decoded.error is None
    name = f"{__name__}.Order"
    assert decoded.unresolved == {name}
    order = decoded.value[2][0]
    assert isinstance(order, safe_pickle.Placeholder)
    assert not isinstance(order, Order)
    assert repr(order).startswith(f"<{name}(")
    assert "42" in repr(order)  # its state is still shown
    assert repr(decoded.value[3]["fn"]) == f"<{name} (not imported)>"


def test_a_malicious_pickle_runs_nothing(tmp_path: Path) -> None:
    target = tmp_path / "created-by-pickle"
    payload = pickle.dumps(("f", None, (Exploit(str(target)),), {}))
    assert pickle.loads(payload) is not None and target.exists()  # the real thing would
    target.rmdir()
    decoded = safe_pickle.loads(payload)
    assert not target.exists()
    assert "posix.mkdir" in decoded.unresolved or "os.mkdir" in decoded.unresolved


def test_unknown_bytes_are_reported_not_raised() -> None:
    assert safe_pickle.loads(b"\x80\x05\x95broken").error
    assert safe_pickle.loads(b"not json either").error == (
        "unknown serializer (neither pickle nor JSON)"
    )


def test_decompress_accepts_plain_data() -> None:
    assert safe_pickle.decompress(zlib.compress(b"abc")) == b"abc"
    assert safe_pickle.decompress(b"abc") == b"abc"


def test_decode_call_reads_the_pickled_call_without_importing_it() -> None:
    import pickle
    import zlib

    from taskqueue_contract.job_data import decode_call

    raw = zlib.compress(pickle.dumps(("app.tasks.run", None, ("AAPL", 3), {"fast": True})))
    call = decode_call(raw)
    assert (call.function, call.args, call.kwargs) == ("app.tasks.run", ("AAPL", 3), {"fast": True})
    missing = decode_call(None)
    assert missing.function is None and missing.decoded.error == "the job has no data"
    broken = decode_call(b"\x80\x05garbage")
    assert broken.args is None and broken.decoded.error
