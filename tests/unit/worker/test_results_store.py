"""Parquet result storage on a local path (the S3 path shares the code but the pyarrow FS)."""

from __future__ import annotations

import os
import time
from datetime import timedelta
from pathlib import Path

import pandas as pd
import pyarrow.fs as pafs
import pytest
from taskqueue_worker import results, storage
from taskqueue_worker.examples import make_table


def frame() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "symbol": ["KRW-BTC", "KRW-ETH"],
            "total_return": [0.12, -0.03],
            "start": pd.to_datetime(["2024-01-01", "2024-01-02"], utc=True),
        }
    )


def test_save_and_load_round_trip_keyed_by_job_id(tmp_path: Path) -> None:
    store = results.ResultStore(tmp_path / "results")
    ref = store.save("job-1", frame())
    assert ref == {
        "taskqueue_result": "parquet",
        "uri": str(tmp_path / "results" / "job-1.parquet"),
        "job_id": "job-1",
        "rows": 2,
        "columns": ["symbol", "total_return", "start"],
    }
    assert results.is_result_ref(ref)
    pd.testing.assert_frame_equal(store.load("job-1"), frame())
    pd.testing.assert_frame_equal(results.load_result(ref), frame())
    pd.testing.assert_frame_equal(
        results.load_result("job-1", uri=str(tmp_path / "results")), frame()
    )
    assert store.exists("job-1") and not store.exists("job-2")
    assert sorted(p.name for p in (tmp_path / "results").iterdir()) == ["job-1.parquet"]


def test_file_uris_work_like_paths(tmp_path: Path) -> None:
    store = results.ResultStore(f"file://{tmp_path}")
    store.save("j", frame())
    assert (tmp_path / "j.parquet").is_file()


def test_job_ids_cannot_escape_the_location(tmp_path: Path) -> None:
    store = results.ResultStore(tmp_path)
    for bad in ("../x", "a/b", "", "a.b"):
        with pytest.raises(ValueError):
            store.path_for(bad)


def test_cleanup_removes_only_expired_results_and_temp_files(tmp_path: Path) -> None:
    store = results.ResultStore(tmp_path)
    for job_id in ("old", "new"):
        store.save(job_id, frame())
    (tmp_path / ".stale.tmp").write_text("x")
    (tmp_path / "notes.txt").write_text("not ours")
    eight_days_ago = time.time() - 8 * 86400
    for name in ("old.parquet", ".stale.tmp", "notes.txt"):
        os.utime(tmp_path / name, (eight_days_ago, eight_days_ago))
    assert store.cleanup(timedelta(days=7)) == ["old"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["new.parquet", "notes.txt"]
    assert store.cleanup(timedelta(days=7)) == []
    assert results.ResultStore(tmp_path / "absent").cleanup() == []


def test_cleanup_task_uses_env_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = results.ResultStore(tmp_path)
    store.save("a", frame())
    os.utime(tmp_path / "a.parquet", (time.time() - 3600, time.time() - 3600))
    monkeypatch.setenv(results.RESULT_URI_ENV, str(tmp_path))
    assert results.cleanup_results()["removed"] == []  # default TTL: 7 days
    monkeypatch.setenv(results.RESULT_TTL_ENV, "60")
    assert results.cleanup_results()["removed"] == ["a"]
    monkeypatch.delenv(results.RESULT_URI_ENV)
    with pytest.raises(results.ResultStoreNotConfigured):
        results.cleanup_results()


def test_result_ttl_default_is_seven_days() -> None:
    assert results.result_ttl({}) == timedelta(days=7)
    assert results.result_ttl({results.RESULT_TTL_ENV: "86400"}) == timedelta(days=1)
    with pytest.raises(ValueError):
        results.result_ttl({results.RESULT_TTL_ENV: "0"})


def test_decorated_function_outside_a_job_returns_its_frame() -> None:
    table = make_table(4)
    assert isinstance(table, pd.DataFrame)
    assert table["square"].tolist() == [0, 1, 4, 9]
    assert make_table.__taskqueue_parquet_result__ is True  # type: ignore[attr-defined]


def test_non_frames_pass_through_untouched(tmp_path: Path) -> None:
    class NotAJob:
        id = "x"

    value = {"a": 1}
    env = {results.RESULT_URI_ENV: str(tmp_path)}
    assert results.maybe_store_result(NotAJob(), value, env) is value  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_s3_uris_keep_their_endpoint_options() -> None:
    location = storage.resolve("s3://bucket/results?endpoint_override=127.0.0.1:9&scheme=http")
    assert isinstance(location.fs, pafs.S3FileSystem)
    assert location.base == "bucket/results"
    uri = location.uri_of(location.path("job-1.parquet"))
    assert uri == "s3://bucket/results/job-1.parquet?endpoint_override=127.0.0.1:9&scheme=http"
    again = storage.resolve(uri)
    assert again.base == "bucket/results/job-1.parquet"


def test_object_store_code_path_on_pyarrows_in_memory_filesystem(tmp_path: Path) -> None:
    # pyarrow's own in-memory filesystem behaves like an object store here (not
    # local: direct writes, no rename); its files are all dated `created`.
    from datetime import UTC, datetime

    created = datetime(2024, 1, 1, tzinfo=UTC)
    store = results.ResultStore(tmp_path)
    store.location = storage.Location(
        pafs._MockFileSystem(created), "bucket/results", "mock://bucket/results"
    )
    ref = store.save("job-9", frame())
    assert ref["uri"] == "mock://bucket/results/job-9.parquet"
    pd.testing.assert_frame_equal(store.load("job-9"), frame())
    assert store.exists("job-9")
    week = timedelta(days=7)
    assert store.cleanup(week, now=(created + timedelta(days=6)).timestamp()) == []
    assert store.cleanup(week, now=(created + timedelta(days=8)).timestamp()) == ["job-9"]
    assert not store.exists("job-9")
