"""A Modal runner input lingers as the local executor does (jobhook.linger): once its claims
come less than a linger apart it watches for its tier's types, their inserts count themselves
instead of ringing (so they spawn no input), and it starts them from the count. One input per
container watches; `stop` and the claim window end the watching and the claiming."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Iterator
from typing import Any
from uuid import UUID

import psycopg
import pytest
from pydantic import BaseModel

from jobhook import worker
from jobhook.config import Settings
from jobhook.context import JobContext
from jobhook.linger import Linger
from jobhook.registry import Registry
from jobhook.runner import Outcome, Runner
from jobhook.store import Store
from tests.conftest import DEMO_USER, LOCAL_STACK, Stack, finished, insert_on, wait_for_job
from tests.test_linger import _rung, _until, _watching

pytestmark = pytest.mark.commits

TYPE = "drain_lingered"
SLOW = "drain_slow"
CAPPED = "drain_capped"


class NoParams(BaseModel):
    pass


def _registry() -> Registry:
    registry = Registry()

    @registry.job(TYPE, params=NoParams)
    async def lingered(params: NoParams, ctx: JobContext) -> None:
        pass

    @registry.job(SLOW, params=NoParams, tier="browser")
    async def slow(params: NoParams, ctx: JobContext) -> None:
        await asyncio.sleep(0.5)

    @registry.job(CAPPED, params=NoParams, tier="gpu", max_running_per_user=1)
    async def capped(params: NoParams, ctx: JobContext) -> None:
        pass

    return registry


REGISTRY = _registry()


@pytest.fixture
def conn(committed: Stack, monkeypatch: pytest.MonkeyPatch) -> Iterator[psycopg.Connection[Any]]:
    # Each test a fresh container, as far as lingering goes: no earlier claims, no watch.
    monkeypatch.setattr(worker, "_lingers", {})
    with psycopg.connect(committed.url, autocommit=True) as conn:
        REGISTRY.sync(conn)
        conn.execute("update jobhook.locks set rung_at = null where name = 'doorbell'")
        conn.execute("delete from jobhook.drains")
        yield conn


def _settings(url: str, linger_ms: int) -> Settings:
    values = {
        **LOCAL_STACK,
        "DATABASE_URL": url,
        "JOBHOOK_DRAIN_LINGER_MS": str(linger_ms),
        "JOBHOOK_DRAIN_POLL_MS": "2",
    }
    return Settings(**values)  # type: ignore[arg-type]


def _rings(conn: psycopg.Connection[Any], job_type: str = TYPE) -> UUID:
    """Insert one job when no doorbell has rung for a while, and see that it rang."""
    conn.execute("update jobhook.locks set rung_at = null where name = 'doorbell'")
    job_id = insert_on(conn, job_type)
    assert _rung(conn)[-1] == str(job_id)
    return job_id


def _input(ids: list[UUID], settings: Settings, **options: Any) -> asyncio.Task[list[Outcome]]:
    """One input of the runner function, as Modal would run it for a doorbell."""
    tier = options.pop("tier", "cpu")
    work: Awaitable[list[Outcome]] = worker.run_jobs(
        [str(job_id) for job_id in ids], REGISTRY, settings, tier, **options
    )
    return asyncio.ensure_future(work)


async def _watching_input(url: str, conn: psycopg.Connection[Any]) -> asyncio.Task[list[Outcome]]:
    """Two inputs less than a linger apart, as a stream's doorbells spawn them: the second one
    watches."""
    settings = _settings(url, linger_ms=3000)
    assert await _input([_rings(conn)], settings) == [Outcome.COMPLETED]
    second = _input([_rings(conn)], settings)
    await _until(lambda: _watching(conn, TYPE))
    return second


async def test_an_input_whose_claims_come_close_watches_and_starts_what_counts_itself(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    watching = await _watching_input(committed.url, conn)
    rung = len(_rung(conn))
    counted = [insert_on(conn, TYPE) for _ in range(3)]
    # No ring, so no spawn: the watching input starts them from the count.
    assert len(_rung(conn)) == rung
    for job_id in counted:
        assert (await wait_for_job(committed.url, job_id, finished, within=20))["status"] == (
            "completed"
        )
    # With nothing more coming it stops at the end of its linger, and takes its watch back.
    outcomes = await asyncio.wait_for(watching, 20)
    assert outcomes == [Outcome.COMPLETED] * 4
    assert not _watching(conn, TYPE)
    _rings(conn)


async def test_a_lone_input_does_not_watch(committed: Stack, conn: psycopg.Connection[Any]) -> None:
    settings = _settings(committed.url, linger_ms=3000)
    assert await _input([_rings(conn)], settings) == [Outcome.COMPLETED]
    # It never listed its types: at a few jobs a second every insert rings, and nothing looks.
    assert conn.execute("select count(*) from jobhook.drains").fetchone() == (0,)
    _rings(conn)


async def test_an_input_never_watches_for_a_type_capped_per_user(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    # Its users' jobs wait for their own to end, wherever those run: their inserts ring.
    settings = _settings(committed.url, linger_ms=3000)
    for _ in range(2):
        assert await _input([_rings(conn, CAPPED)], settings, tier="gpu") == [Outcome.COMPLETED]
    assert conn.execute("select count(*) from jobhook.drains").fetchone() == (0,)
    _rings(conn, CAPPED)


async def test_one_input_of_a_container_watches_at_a_time(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    watching = await _watching_input(committed.url, conn)
    try:
        # An input for a type of the tier spawned meanwhile runs its job and returns, while the
        # first one still watches.
        job_id = insert_on(conn, TYPE)
        other = await asyncio.wait_for(_input([job_id], _settings(committed.url, 3000)), 20)
        assert other in ([Outcome.COMPLETED], [])  # the watcher may have started it first
        assert (await wait_for_job(committed.url, job_id, finished, within=20))["status"] == (
            "completed"
        )
        assert not watching.done()
        assert _watching(conn, TYPE)
    finally:
        await asyncio.wait_for(watching, 20)


async def test_stopping_a_watching_drain_takes_its_watch_back_at_once(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    async with Store.open(committed.url) as store:
        runner = Runner(store, REGISTRY, "test-worker")
        linger = Linger(store, linger_ms=10_000, poll_ms=2)
        stop = asyncio.Event()
        for n in range(2):  # the second claim within a linger of the first: it watches
            job_id = _rings(conn)
            drain = asyncio.ensure_future(runner.drain([TYPE], 4, [job_id], stop, linger))
            if n == 0:
                assert await drain == [Outcome.COMPLETED]
        await _until(lambda: _watching(conn, TYPE))
        stop.set()
        # Well inside the 10 s linger.
        assert await asyncio.wait_for(drain, 5) == [Outcome.COMPLETED]
    assert not _watching(conn, TYPE)
    assert not linger.watching
    assert linger.hold()  # given back for the container's next input


async def test_a_watching_input_that_modal_stops_takes_its_watch_back(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    watching = await _watching_input(committed.url, conn)
    watching.cancel()  # what SIGINT does to each running input of a container
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(watching, 10)
    # Inserts ring again at once, for the containers that go on running.
    assert not _watching(conn, TYPE)
    _rings(conn)


async def test_an_input_stops_claiming_when_its_window_closes(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    ids = [
        UUID(str(row[0]))
        for row in conn.execute(
            "insert into public.jobs (user_id, job_type)"
            " select %s, %s from generate_series(1, 30) returning id",
            (DEMO_USER, SLOW),
        )
    ]
    settings = _settings(committed.url, linger_ms=0)
    # 25 slots: the first 25 start at once and take half a second; the window closes before
    # any slot frees up, so the other five wait for another input instead of being claimed by
    # one that Modal would stop at its function's timeout.
    outcomes = await _input(ids, settings, tier="browser", claim_window=0.2)
    assert outcomes == [Outcome.COMPLETED] * worker.DRAIN_SLOTS
    pending = conn.execute(
        "select count(*) from public.jobs where job_type = %s and status = 'pending'", (SLOW,)
    ).fetchone()
    assert pending == (30 - worker.DRAIN_SLOTS,)
    # The next input takes them.
    assert await _input(ids, settings, tier="browser") == [Outcome.COMPLETED] * 5
