"""`dlq list/show/requeue/purge` against real Redis, with jobs failed by a real RQ worker."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta

import pytest
import redis
from cli_helpers import Cli
from rq import Queue, SimpleWorker
from rq.job import Job, JobStatus
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from taskqueue_plugin.errors import EXIT_ERROR, EXIT_NOT_FOUND, EXIT_REDIS
from testbed.redis_server import RedisServer

pytestmark = pytest.mark.integration
FAIL = "taskqueue_worker.examples.fail"
FLAKY = "taskqueue_worker.examples.flaky"
QUEUE = "dlq-work"


class Unimportable:
    """Stands for an app class in a job's arguments: the plugin must not need it."""

    def __init__(self, order: int) -> None:
        self.order = order


def run_burst(queue: Queue) -> None:
    SimpleWorker([queue], connection=queue.connection).work(burst=True)


@pytest.fixture
def queue(redis_client: redis.Redis) -> Queue:
    return Queue(QUEUE, connection=redis_client)


@pytest.fixture
def cli(capsys: pytest.CaptureFixture[str], redis_server: RedisServer) -> Cli:
    return Cli(capsys, redis_server.url, [QUEUE])


def fail_five(queue: Queue) -> list[Job]:
    jobs = [queue.enqueue(FAIL, f"planted {i}") for i in range(5)]
    run_burst(queue)
    assert all(job.get_status(refresh=True) == JobStatus.FAILED for job in jobs)
    return jobs


def test_list_requeue_and_run_again(cli: Cli, queue: Queue, redis_client: redis.Redis) -> None:
    # flaky(..., 1): fails on the first run, succeeds when the requeued job runs again.
    jobs = [queue.enqueue(FLAKY, f"cli-requeue-{i}", 1) for i in range(5)]
    run_burst(queue)
    failed = FailedJobRegistry(QUEUE, connection=redis_client)
    assert sorted(failed.get_job_ids(cleanup=False)) == sorted(j.id for j in jobs)

    listed = cli("dlq", "list", "tq", "-o", "json")
    assert listed.code == 0, listed.err
    document = listed.json()
    assert document["total"] == 5
    by_id = {item["id"]: item for item in document["items"]}
    assert set(by_id) == {j.id for j in jobs}
    for index, job in enumerate(jobs):
        item = by_id[job.id]
        assert item["function"] == FLAKY
        assert item["exception"] == (
            f"RuntimeError: flaky 'cli-requeue-{index}': attempt 1 fails (1 planned failures)"
        )
        assert item["queue"] == QUEUE and item["failedAt"]

    table = cli("dlq", "list", "tq")
    assert table.out.splitlines()[0].split() == [
        "JOB", "ID", "QUEUE", "FUNCTION", "EXCEPTION", "FAILED", "RETRIES", "LEFT"
    ]  # fmt: skip
    assert sum(job.id in table.out for job in jobs) == 5

    requeued = cli("dlq", "requeue", "tq", "--all")
    assert requeued.code == 0, requeued.err
    assert requeued.out.startswith("requeued 5 failed job(s)")
    assert failed.get_job_ids(cleanup=False) == []
    assert sorted(queue.get_job_ids()) == sorted(j.id for j in jobs)
    assert all(job.get_status(refresh=True) == JobStatus.QUEUED for job in jobs)

    run_burst(queue)  # they run again, and this time they succeed
    assert all(job.get_status(refresh=True) == JobStatus.FINISHED for job in jobs)
    assert [job.return_value() for job in jobs] == [2] * 5
    assert cli("dlq", "list", "tq", "-o", "json").json() == {"total": 0, "items": []}


def test_purge_empties_the_failed_registry(
    cli: Cli, queue: Queue, redis_client: redis.Redis, monkeypatch: pytest.MonkeyPatch
) -> None:
    jobs = fail_five(queue)
    failed = FailedJobRegistry(QUEUE, connection=redis_client)

    refused = cli("dlq", "purge", "tq", "--all")  # pytest's stdin is no TTY
    assert refused.code == EXIT_ERROR and "pass --yes" in refused.err
    assert len(failed.get_job_ids(cleanup=False)) == 5

    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    monkeypatch.setattr("sys.stdin", Tty("n\n"))
    declined = cli("dlq", "purge", "tq", "--all")
    assert declined.code == EXIT_ERROR and "Delete 5 failed job(s)" in declined.out
    assert len(failed.get_job_ids(cleanup=False)) == 5

    monkeypatch.setattr("sys.stdin", Tty("y\n"))
    one = cli("dlq", "purge", "tq", jobs[0].id)
    assert one.code == 0 and "purged 1 failed job(s)" in one.out
    assert not Job.exists(jobs[0].id, connection=redis_client)

    dry = cli("dlq", "purge", "tq", "--all", "--dry-run")
    assert dry.code == 0 and dry.out.startswith("would purge 4 failed job(s)")
    assert len(failed.get_job_ids(cleanup=False)) == 4

    purged = cli("dlq", "purge", "tq", "--all", "--yes")
    assert purged.code == 0 and "purged 4 failed job(s)" in purged.out
    assert failed.get_job_ids(cleanup=False) == []
    assert redis_client.zcard(f"rq:failed:{QUEUE}") == 0
    for job in jobs:
        assert not Job.exists(job.id, connection=redis_client)
        assert not redis_client.exists(f"rq:results:{job.id}")


def test_selectors_by_id_age_and_exception(
    cli: Cli, queue: Queue, redis_client: redis.Redis
) -> None:
    jobs = fail_five(queue)
    failed = FailedJobRegistry(QUEUE, connection=redis_client)
    # Backdate one failure by ten days (as if it had failed then).
    old = (datetime.now(UTC) - timedelta(days=10)).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
    redis_client.hset(f"rq:job:{jobs[4].id}", "ended_at", old)

    by_age = cli("dlq", "requeue", "tq", "--older-than", "7d", "-o", "json")
    assert by_age.code == 0, by_age.err
    assert by_age.json()["requeued"] == [jobs[4].id]

    by_text = cli("dlq", "requeue", "tq", "--exception", "planted 2")
    assert by_text.code == 0 and by_text.out.startswith("requeued 1 ")
    assert jobs[2].get_status(refresh=True) == JobStatus.QUEUED

    by_ids = cli("dlq", "requeue", "tq", jobs[0].id, jobs[1].id)
    assert by_ids.code == 0 and by_ids.out.startswith("requeued 2 ")
    assert failed.get_job_ids(cleanup=False) == [jobs[3].id]

    bad = cli("dlq", "requeue", "tq", jobs[3].id, "no-such-job", jobs[0].id)
    assert bad.code == EXIT_NOT_FOUND
    assert 'no job "no-such-job"' in bad.err and "is not a dead letter" in bad.err
    assert failed.get_job_ids(cleanup=False) == [jobs[3].id]  # all or nothing

    malformed = cli("dlq", "purge", "tq", "--older-than", "10 days", "--yes")
    assert malformed.code == 2 and "invalid duration" in malformed.err
    assert failed.get_job_ids(cleanup=False) == [jobs[3].id]


def test_show_prints_the_traceback_and_arguments_without_app_code(
    cli: Cli, queue: Queue, redis_client: redis.Redis
) -> None:
    [job] = [queue.enqueue(FAIL, "visible message", meta={"owner": "ops"})]
    run_burst(queue)
    shown = cli("dlq", "show", "tq", job.id)
    assert shown.code == 0, shown.err
    assert f"Job:          {job.id}" in shown.out
    assert "Args:         ('visible message',)" in shown.out
    assert "raise RuntimeError(message)" in shown.out
    assert shown.out.rstrip().endswith("RuntimeError: visible message")
    assert '"owner": "ops"' in shown.out

    odd = queue.enqueue("myapp.tasks.process", Unimportable(7), retry=None)
    document = cli("dlq", "show", "tq", odd.id, "-o", "json").json()
    assert document["status"] == "queued" and document["function"] == "myapp.tasks.process"
    assert document["args"][0].startswith("<") and ".Unimportable(" in document["args"][0]
    assert any(".Unimportable" in note for note in document["notes"])

    missing = cli("dlq", "show", "tq", "not-a-job")
    assert missing.code == EXIT_NOT_FOUND and missing.err.startswith('error: no job "not-a-job"')
    other = Queue("elsewhere", connection=redis_client).enqueue(FAIL)
    foreign = cli("dlq", "show", "tq", other.id)
    assert foreign.code == EXIT_NOT_FOUND and "not on a queue of TaskQueue" in foreign.err


def test_requeue_only_touches_the_selected_queue(
    capsys: pytest.CaptureFixture[str], redis_server: RedisServer, redis_client: redis.Redis
) -> None:
    high, low = (
        Queue("sel-high", connection=redis_client),
        Queue("sel-low", connection=redis_client),
    )
    for q in (high, low):
        q.enqueue(FAIL)
        run_burst(q)
    cli = Cli(capsys, redis_server.url, ["sel-high", "sel-low"])
    assert cli("dlq", "list", "tq", "-o", "json").json()["total"] == 2
    ran = Cli(capsys, redis_server.url, ["sel-low"])("dlq", "requeue", "tq", "--all")
    assert ran.out.startswith("requeued 1 ")
    assert FailedJobRegistry("sel-high", connection=redis_client).get_job_ids(cleanup=False)
    assert low.count == 1 and high.count == 0
    assert FinishedJobRegistry("sel-low", connection=redis_client).get_job_ids(cleanup=False) == []


@pytest.fixture
def password_redis() -> RedisServer:
    server = RedisServer(password="plugin-secret-42").start()
    try:
        yield server  # type: ignore[misc]
    finally:
        server.cleanup()


def test_passwords_never_show(
    capsys: pytest.CaptureFixture[str], password_redis: RedisServer
) -> None:
    client = password_redis.client()
    queue = Queue("pw", connection=client)
    queue.enqueue(FAIL, "with a password")
    run_burst(queue)
    good = Cli(capsys, password_redis.url, ["pw"])("dlq", "list", "tq")
    assert good.code == 0 and "RuntimeError: with a password" in good.out
    wrong_url = password_redis.url.replace("plugin-secret-42", "wrong-secret-43")
    wrong = Cli(capsys, wrong_url, ["pw"])("status", "tq")
    assert wrong.code == EXIT_REDIS
    assert "refused the credentials" in wrong.err and "redis://:***@127.0.0.1" in wrong.err
    password_redis.stop()
    down = Cli(capsys, password_redis.url, ["pw"])("dlq", "list", "tq")
    assert down.code == EXIT_REDIS and "cannot reach Redis" in down.err
    for ran in (good, wrong, down):
        assert "plugin-secret-42" not in ran.out + ran.err
        assert "wrong-secret-43" not in ran.out + ran.err
