"""Where tables live: a local/mounted path or an S3-compatible URI, via pyarrow.fs.

Accepted locations:

* ``/data/results`` or ``file:///data/results`` - a mounted volume;
* ``s3://bucket/prefix`` - S3 or any S3-compatible store. pyarrow reads the usual
  ``AWS_*`` variables; for MinIO and friends add query options understood by
  pyarrow, e.g. ``s3://bucket/prefix?endpoint_override=minio:9000&scheme=http``.
"""

from __future__ import annotations

import contextlib
import os
import uuid
from dataclasses import dataclass

import pyarrow as pa
import pyarrow.fs as pafs
import pyarrow.parquet as pq


@dataclass(frozen=True)
class Location:
    """A filesystem plus a base path inside it; ``uri`` is what the user gave."""

    fs: pafs.FileSystem
    base: str
    uri: str

    @property
    def is_local(self) -> bool:
        return isinstance(self.fs, pafs.LocalFileSystem)

    def path(self, *parts: str) -> str:
        return "/".join([self.base.rstrip("/"), *parts]) if self.base else "/".join(parts)

    def uri_of(self, path: str) -> str:
        if self.is_local:
            return path
        # Keep the query (endpoint_override=...): without it the URI is unreadable.
        scheme = self.uri.split("://", 1)[0]
        query = self.uri.partition("?")[2]
        return f"{scheme}://{path}" + (f"?{query}" if query else "")


def resolve(uri: str | os.PathLike[str]) -> Location:
    """A :class:`Location` for a local path or a filesystem URI."""
    text = os.fspath(uri)
    if not text:
        raise ValueError("empty storage location")
    if "://" not in text:
        return Location(pafs.LocalFileSystem(), os.path.abspath(text), text)
    fs, base = pafs.FileSystem.from_uri(text)
    return Location(fs, base, text)


def write_table(location: Location, path: str, table: pa.Table) -> None:
    """Write `table` as Parquet at `path`, never leaving a half-written file.

    Local: write a sibling temp file and rename it (atomic on POSIX). Object
    stores make each upload visible only once complete, so write directly.
    """
    parent = path.rsplit("/", 1)[0]
    if parent:
        location.fs.create_dir(parent, recursive=True)
    if not location.is_local:
        pq.write_table(table, path, filesystem=location.fs)
        return
    tmp = f"{parent}/.{uuid.uuid4().hex}.tmp"
    try:
        pq.write_table(table, tmp, filesystem=location.fs)
        os.replace(tmp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def exists(location: Location, path: str) -> bool:
    return location.fs.get_file_info(path).type == pafs.FileType.File


def read_table(location: Location, path: str) -> pa.Table:
    return pq.read_table(path, filesystem=location.fs)
