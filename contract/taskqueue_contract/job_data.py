"""Read RQ's job data (pickles, compressed tracebacks) without running application code.

The plugin runs on an operator's laptop without the app's packages, and unpickling
arbitrary data from Redis with `pickle.loads` would run whatever the pickle names.
Here every global outside a small allow-list of plain value types becomes an inert
placeholder that remembers its name and the arguments it was built with, so `dlq show`
can still print `<myapp.Order(42)>` and say which classes it did not load.
"""

from __future__ import annotations

import base64
import binascii
import io
import json
import pickle
import pickletools
import reprlib
import zlib
from dataclasses import dataclass, field
from typing import Any

# Value types whose constructors have no side effects (module, name).
_ALLOWED = frozenset(
    {
        ("builtins", "set"),
        ("builtins", "frozenset"),
        ("builtins", "bytearray"),
        ("builtins", "bytes"),
        ("builtins", "complex"),
        ("builtins", "slice"),
        ("builtins", "range"),
        ("builtins", "object"),
        ("_codecs", "encode"),  # how protocol 2 pickles bytes
        ("copyreg", "_reconstructor"),  # protocols 0/1 objects; its classes pass through here too
        ("datetime", "date"),
        ("datetime", "datetime"),
        ("datetime", "time"),
        ("datetime", "timedelta"),
        ("datetime", "timezone"),
        ("decimal", "Decimal"),
        ("fractions", "Fraction"),
        ("uuid", "UUID"),
        ("uuid", "SafeUUID"),
        ("collections", "OrderedDict"),
        ("collections", "deque"),
        ("collections", "defaultdict"),
        ("collections", "Counter"),
        ("pathlib", "PurePosixPath"),
        ("pathlib", "PosixPath"),
    }
)
_PY2_MODULES = {"__builtin__": "builtins", "copy_reg": "copyreg"}
_short = reprlib.Repr()
_short.maxstring = 60
_short.maxother = 60


class _PlaceholderType(type):
    """Metaclass, so a pickled *reference* to a function or class prints by its name."""

    def __repr__(cls) -> str:
        return f"<{cls.__module__}.{cls.__qualname__} (not imported)>"


class Placeholder(metaclass=_PlaceholderType):
    """Stands for an object of a class the plugin did not import; never runs its code."""

    def __new__(cls, *args: Any, **kwargs: Any) -> Placeholder:
        self = object.__new__(cls)
        self.__dict__["_args"] = args
        self.__dict__["_state"] = None
        self.__dict__["_items"] = []
        return self

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        if args:
            self.__dict__["_args"] = args

    def __setstate__(self, state: Any) -> None:
        self.__dict__["_state"] = state

    # List/dict subclasses are rebuilt with APPEND(S)/SETITEM(S).
    def append(self, item: Any) -> None:
        self.__dict__["_items"].append(item)

    def extend(self, items: Any) -> None:
        self.__dict__["_items"].extend(items)

    def __setitem__(self, key: Any, value: Any) -> None:
        self.__dict__["_items"].append((key, value))

    def __repr__(self) -> str:
        kind = type(self)
        inside = ", ".join(_short.repr(a) for a in self.__dict__["_args"])
        state = self.__dict__["_state"]
        extra = f" {_short.repr(state)}" if state is not None else ""
        return f"<{kind.__module__}.{kind.__qualname__}({inside}){extra}>"


class _SafeUnpickler(pickle.Unpickler):
    def __init__(self, data: bytes, unresolved: set[str]) -> None:
        super().__init__(io.BytesIO(data))
        self.unresolved = unresolved
        self._made: dict[tuple[str, str], type] = {}

    def find_class(self, module: str, name: str) -> Any:
        module = _PY2_MODULES.get(module, module)
        if (module, name) in _ALLOWED:
            return super().find_class(module, name)
        self.unresolved.add(f"{module}.{name}")
        key = (module, name)
        if key not in self._made:
            self._made[key] = _PlaceholderType(
                name.rsplit(".", 1)[-1],
                (Placeholder,),
                {"__module__": module, "__qualname__": name},
            )
        return self._made[key]

    def persistent_load(self, pid: Any) -> Any:  # a custom pickler's references: keep inert
        return f"<persistent id {pid!r}>"


@dataclass
class Decoded:
    """A decoded payload; `unresolved` names the classes/functions left as placeholders."""

    value: Any
    unresolved: set[str] = field(default_factory=set)
    error: str | None = None


def loads(data: bytes) -> Decoded:
    """Pickle (RQ's default serializer) or JSON (rq.serializers.JSONSerializer)."""
    unresolved: set[str] = set()
    if data[:1] == b"\x80" or data[:1] in (b"(", b"]", b"}", b"c"):
        try:
            return Decoded(_SafeUnpickler(data, unresolved).load(), unresolved)
        except Exception as error:  # any malformed or exotic pickle: report, never crash
            if data[:1] == b"\x80":
                return Decoded(None, unresolved, f"cannot decode the pickle: {error}")
    try:
        return Decoded(json.loads(data))
    except (ValueError, UnicodeDecodeError):
        return Decoded(None, unresolved, "unknown serializer (neither pickle nor JSON)")


def decompress(raw: bytes) -> bytes:
    """RQ compresses `data` and `exc_info` with zlib, but older jobs may be plain."""
    try:
        return zlib.decompress(raw)
    except zlib.error:
        return raw


def exception_text(raw: bytes | str | None) -> str | None:
    """A failure's traceback as RQ stores it (`exc_string`: base64 of zlib), decoded.

    Plain text (older RQ, other writers) is returned as it is; nothing -> None.
    """
    if not raw:
        return None
    data = raw.encode() if isinstance(raw, str) else raw
    try:
        return zlib.decompress(base64.b64decode(data, validate=True)).decode(errors="replace")
    except (binascii.Error, zlib.error, ValueError):
        return data.decode(errors="replace")


def function_name(raw_data: bytes | None) -> str | None:
    """The job's function path: the first string of the (func, instance, args, kwargs) tuple.

    Walks the pickle's opcodes without building any object (cheap even when the
    arguments are large DataFrames, and safe).
    """
    if not raw_data:
        return None
    data = decompress(raw_data)
    if data[:1] == b"\x80":
        try:
            for opcode, argument, _ in pickletools.genops(data):
                if opcode.name in ("SHORT_BINUNICODE", "BINUNICODE", "BINUNICODE8", "UNICODE"):
                    return str(argument)
                if opcode.name in ("STACK_GLOBAL", "GLOBAL", "REDUCE", "BUILD"):
                    return None  # an object came first: not RQ's tuple layout
        except Exception:
            return None
        return None
    decoded = loads(data)
    value = decoded.value
    if isinstance(value, list | tuple) and value and isinstance(value[0], str):
        return value[0]
    return None


@dataclass
class Call:
    """A job's call as RQ pickled it: (function, instance, args, kwargs)."""

    function: str | None
    args: Any
    kwargs: Any
    decoded: Decoded


def decode_call(raw_data: bytes | None) -> Call:
    """The call in a job hash's `data` (zlib + pickle or JSON), with placeholders for the
    classes not imported; `args`/`kwargs` None when it cannot be decoded (then
    `decoded.error` says why)."""
    if not raw_data:
        return Call(None, None, None, Decoded(None, set(), "the job has no data"))
    decoded = loads(decompress(raw_data))
    value = decoded.value
    if decoded.error or not isinstance(value, list | tuple) or len(value) != 4:
        return Call(function_name(raw_data), None, None, decoded)
    function, _instance, args, kwargs = value
    return Call(str(function) if function is not None else None, args, kwargs, decoded)
