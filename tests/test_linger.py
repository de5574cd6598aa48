"""A runner that has run dry keeps watching for a moment (jobhook.linger): inserts of its types
meanwhile count themselves instead of ringing, and it starts them from the count; once it stops
watching, or closes, or for types it does not run, every insert rings again."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
from collections.abc import AsyncIterator, Callable
from typing import Any
from uuid import UUID

import psycopg
import pytest
from pydantic import BaseModel

from jobhook.context import JobContext
from jobhook.doorbell import DispatchedJob
from jobhook.executor import LocalExecutor
from jobhook.linger import Linger
from jobhook.registry import Registry
from jobhook.runner import Runner
from jobhook.store import Store
from tests.conftest import (
    DEMO_USER,
    Stack,
    act_as_user,
    finished,
    insert_on,
    queued_doorbells,
    wait_for_job,
)

pytestmark = pytest.mark.commits

TYPE = "lingered"
CAPPED = "lingered_capped"


class NoParams(BaseModel):
    pass


def _rung(conn: psycopg.Connection[Any]) -> list[str]:
    """Every id the queued doorbells name."""
    return [job_id for ring in queued_doorbells(conn) for job_id in ring]


def _watching(conn: psycopg.Connection[Any], job_type: str = TYPE) -> bool:
    row = conn.execute(
        "select watching_until > clock_timestamp() from jobhook.drains where job_type = %s",
        (job_type,),
    ).fetchone()
    return bool(row and row[0])


@pytest.fixture
def conn(committed: Stack) -> Any:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute("update jobhook.locks set rung_at = null where name = 'doorbell'")
        conn.execute("delete from jobhook.drains")
        yield conn


def _registry() -> Registry:
    registry = Registry()

    @registry.job(TYPE, params=NoParams)
    async def lingered(params: NoParams, ctx: JobContext) -> None:
        pass

    @registry.job(CAPPED, params=NoParams, max_running_per_user=1)
    async def capped(params: NoParams, ctx: JobContext) -> None:
        pass

    return registry


@contextlib.asynccontextmanager
async def _watching_runner(
    url: str, conn: psycopg.Connection[Any], linger_ms: int
) -> AsyncIterator[LocalExecutor]:
    """A local executor that has run a stream's first two jobs and now watches."""
    registry = _registry()
    registry.sync(conn)
    async with Store.open(url) as store:
        linger = Linger(store, linger_ms, poll_ms=2)
        executor = LocalExecutor(
            Runner(store, registry, "test-worker"), max_concurrency=4, max_per_type=4, linger=linger
        )
        try:
            await _first_job(url, conn, executor)
            yield executor
        finally:
            await executor.aclose()


def _insert_rings(conn: psycopg.Connection[Any], job_type: str = TYPE) -> UUID:
    """Insert one job when no doorbell has rung for a while, and see that it rang."""
    conn.execute("update jobhook.locks set rung_at = null where name = 'doorbell'")
    job_id = insert_on(conn, job_type)
    assert _rung(conn)[-1] == str(job_id)
    return job_id


async def _first_job(url: str, conn: psycopg.Connection[Any], executor: LocalExecutor) -> None:
    """Two jobs rung for and run less than a linger apart, as doorbells start a runner, which
    then watches (a single job is not a stream: after it the runner stops)."""
    for n in range(2):
        job_id = _insert_rings(conn)
        await executor.submit([DispatchedJob(id=job_id, job_type=TYPE)])
        assert (await wait_for_job(url, job_id, finished, within=20))["status"] == "completed"
        if n == 0:
            await asyncio.sleep(0.05)  # the runner is done with its round
            assert not _watching(conn)
    await _until(lambda: _watching(conn))


def _stopped(linger: Linger) -> bool:
    return not linger.watching


async def _until(condition: Callable[[], bool], within: float = 10) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, "not within the time allowed"
        await asyncio.sleep(0.01)


async def test_a_stream_of_inserts_runs_without_a_ring_while_the_runner_watches(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    # Long enough that the stream below never outlasts it on a slow machine.
    async with _watching_runner(committed.url, conn, linger_ms=3000):
        rung = _rung(conn)
        # No doorbell, no ticker: only the watching runner can start these.
        ids = []
        for _ in range(5):
            ids.append(insert_on(conn, TYPE))
            await asyncio.sleep(0.02)
        for job_id in ids:
            row = await wait_for_job(committed.url, job_id, finished, within=20)
            assert row["status"] == "completed"
        assert _rung(conn) == rung


async def test_a_client_insert_counts_itself_while_a_runner_watches(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    async with _watching_runner(committed.url, conn, linger_ms=3000):
        rung = _rung(conn)
        with psycopg.connect(committed.url) as client:
            act_as_user(client, DEMO_USER)
            row = client.execute(
                "insert into public.jobs (job_type) values (%s) returning id", (TYPE,)
            ).fetchone()
            client.commit()
        assert row is not None
        done = await wait_for_job(committed.url, UUID(str(row[0])), finished, within=20)
        assert done["status"] == "completed"
        assert _rung(conn) == rung


async def test_once_the_linger_is_over_inserts_ring_again(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    async with _watching_runner(committed.url, conn, linger_ms=500):
        await _until(lambda: not _watching(conn))
        _insert_rings(conn)


async def test_a_closing_runner_stops_watching_at_once(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    async with _watching_runner(committed.url, conn, linger_ms=10_000) as executor:
        await executor.aclose()
        assert not _watching(conn)
        _insert_rings(conn)


async def test_an_insert_of_a_type_no_runner_watches_for_rings(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    async with _watching_runner(committed.url, conn, linger_ms=10_000):
        _insert_rings(conn, "sample_task")


async def test_a_job_committed_after_the_runners_last_look_is_claimed_when_it_stops(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    async with _watching_runner(committed.url, conn, linger_ms=1000):
        with psycopg.connect(committed.url) as slow:
            # Counted now, visible only at its commit, long after the runner looked (twice).
            late = insert_on(slow, TYPE)
            await asyncio.sleep(0.15)
            slow.commit()
        rung = _rung(conn)
        row = await wait_for_job(committed.url, late, finished, within=20)
        assert row["status"] == "completed"
        assert str(late) not in rung


def test_a_later_watch_stays_and_only_ones_own_is_taken_back(
    conn: psycopg.Connection[Any],
) -> None:
    [(long_until, _)] = conn.execute("select * from jobhook.keep_draining(array['x'], 5000)")
    [(short_until, _)] = conn.execute("select * from jobhook.keep_draining(array['x'], 10)")
    assert short_until < long_until
    conn.execute("select jobhook.stop_draining(array['x'], %s)", (short_until,))
    assert _watching(conn, "x")
    conn.execute("select jobhook.stop_draining(array['x'], %s)", (long_until,))
    assert not _watching(conn, "x")


async def test_stopping_takes_back_every_type_the_watch_listed(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    # A rewrite past half a linger lists only the types the runner can start then (one of them
    # reached its limit): stopping must still take back the other, not leave it to lapse.
    async with Store.open(committed.url) as store:
        linger = Linger(store, linger_ms=2000, poll_ms=2)
        await linger.extend(["x", "y"])
        await asyncio.sleep(1.1)
        await linger.extend(["x"])
        await linger.stop()
    assert not _watching(conn, "x")
    assert not _watching(conn, "y")


@pytest.mark.parametrize("linger_ms", [0, -1, 10_001, None])
def test_a_linger_out_of_range_is_refused(conn: psycopg.Connection[Any], linger_ms: Any) -> None:
    with pytest.raises(psycopg.errors.InvalidParameterValue, match="linger_ms must be between"):
        conn.execute("select jobhook.keep_draining(array['x'], %s)", (linger_ms,))


@pytest.mark.parametrize("role", ["anon", "authenticated"])
def test_clients_can_neither_watch_nor_read_who_does(committed: Stack, role: str) -> None:
    with psycopg.connect(committed.url) as client:
        client.execute(f"set role {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            client.execute("select jobhook.keep_draining(array['sample_task'], 10000)")
        client.rollback()
        client.execute(f"set role {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            client.execute("select * from jobhook.drains")
        client.rollback()
        client.execute(f"set role {role}")
        with pytest.raises(psycopg.errors.InsufficientPrivilege):
            client.execute("select jobhook.stop_draining(array['sample_task'], 'infinity')")


async def test_a_type_capped_per_user_is_never_watched_for(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    async with _watching_runner(committed.url, conn, linger_ms=10_000):
        assert not _watching(conn, CAPPED)
        _insert_rings(conn, CAPPED)


async def test_a_runner_stops_watching_though_other_types_keep_the_count_moving(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    conn.execute("update jobhook.settings set max_doorbells_per_second = 1")
    async with _watching_runner(committed.url, conn, linger_ms=200) as executor:
        assert executor.linger is not None
        deadline = time.monotonic() + 5
        # Inserts of a type this runner does not run share doorbells, moving the count.
        while executor.linger.watching and time.monotonic() < deadline:
            insert_on(conn, "sample_task")
            await asyncio.sleep(0.005)
        assert not executor.linger.watching
        assert not _watching(conn)


async def test_a_job_that_commits_after_the_runner_stopped_watching_is_drained_by_the_next_ring(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    async with _watching_runner(committed.url, conn, linger_ms=200) as executor:
        linger = executor.linger
        assert linger is not None
        with psycopg.connect(committed.url) as slow:
            late = insert_on(slow, TYPE)  # counted while the runner watches
            await _until(functools.partial(_stopped, linger))
            await asyncio.sleep(0.1)  # and its last claim is done
            slow.commit()
        ringing = _insert_rings(conn)
        await executor.submit([DispatchedJob(id=ringing, job_type=TYPE)])
        # No ticker here: only the drain that ring causes can start the late job.
        row = await wait_for_job(committed.url, late, finished, within=10)
        assert row["status"] == "completed"
