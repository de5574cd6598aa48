"""The local executor under a burst larger than its line: nothing waits for the sweep."""

from __future__ import annotations

import asyncio
from collections import Counter
from typing import Any
from uuid import UUID

import psycopg
import pytest
from pydantic import BaseModel

from jobhook.context import JobContext
from jobhook.doorbell import DispatchedJob
from jobhook.executor import LocalExecutor
from jobhook.registry import Registry
from jobhook.runner import Runner
from jobhook.store import ClaimedJob, Store, new_pool
from tests.conftest import DEMO_USER, Stack, finished, insert_on, wait_for_job

pytestmark = pytest.mark.commits


class NoParams(BaseModel):
    pass


async def test_jobs_turned_away_by_a_full_line_are_claimed_back_when_there_is_room(
    committed: Stack,
) -> None:
    registry = Registry()
    running: Counter[str] = Counter()
    most_at_once: Counter[str] = Counter()

    async def record(kind: str) -> None:
        running[kind] += 1
        running["all"] += 1
        for key in (kind, "all"):
            most_at_once[key] = max(most_at_once[key], running[key])
        await asyncio.sleep(0.02)
        running[kind] -= 1
        running["all"] -= 1

    @registry.job("burst_a", params=NoParams)
    async def burst_a(params: NoParams, ctx: JobContext) -> None:
        await record("burst_a")

    @registry.job("burst_b", params=NoParams)
    async def burst_b(params: NoParams, ctx: JobContext) -> None:
        await record("burst_b")

    with psycopg.connect(committed.url, autocommit=True) as conn:
        registry.sync(conn)
        # No delivery worker and no sweep run here: only the executor can start these jobs.
        jobs = [
            DispatchedJob(id=row[0], job_type=row[1])
            for row in conn.execute(
                "insert into public.jobs (user_id, job_type)"
                " select %s, t from generate_series(1, 12), unnest(array['burst_a', 'burst_b']) t"
                " returning id, job_type",
                (DEMO_USER,),
            )
        ]

    async with Store.open(committed.url) as store:
        executor = LocalExecutor(
            Runner(store, registry, "test-worker"), max_concurrency=3, max_per_type=2, max_waiting=4
        )
        try:
            refused = await executor.submit(jobs)
            assert {job.job_type for job in refused} == {"burst_a", "burst_b"}
            assert len(refused) == 20
            for job in jobs:
                row = await wait_for_job(committed.url, job.id, finished, within=20)
                assert row["status"] == "completed"
        finally:
            await executor.aclose()

    # Within the limits throughout: three at once in all, two of a type.
    assert most_at_once == Counter({"all": 3, "burst_a": 2, "burst_b": 2})
    with psycopg.connect(committed.url) as conn:
        attempts = conn.execute("select distinct attempt from public.jobs").fetchall()
    assert attempts == [(1,)]


def sync_and_insert(committed: Stack, registry: Registry, job_type: str) -> UUID:
    """Write the registry's types, and insert one job of `job_type` for the demo user."""
    with psycopg.connect(committed.url, autocommit=True) as conn:
        registry.sync(conn)
        return insert_on(conn, job_type)


class DroppingStore(Store):
    """The real store, whose first claim fails as a claim does when the database restarts."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.dropped = 0

    async def claim(self, ids: list[UUID], worker_id: str) -> list[ClaimedJob]:
        if not self.dropped:
            self.dropped += 1
            raise psycopg.OperationalError("server closed the connection unexpectedly")
        return await super().claim(ids, worker_id)


async def test_a_claim_lost_with_its_connection_is_tried_again(committed: Stack) -> None:
    registry = Registry()

    @registry.job("steady_task", params=NoParams)
    async def steady_task(params: NoParams, ctx: JobContext) -> None:
        return None

    job_id = sync_and_insert(committed, registry, "steady_task")

    store = DroppingStore(new_pool(committed.url))
    async with store:
        executor = LocalExecutor(
            Runner(store, registry, "test-worker"), max_concurrency=3, max_per_type=3
        )
        try:
            assert await executor.submit([DispatchedJob(id=job_id, job_type="steady_task")]) == []
            # No sweep runs here: only a second claim can start the job.
            job = await wait_for_job(committed.url, job_id, finished, within=10)
        finally:
            await executor.aclose()
    assert store.dropped == 1
    assert (job["status"], job["attempt"]) == ("completed", 1)


async def test_a_shutdown_finishes_what_it_can_in_its_grace_and_releases_the_rest(
    committed: Stack,
) -> None:
    registry = Registry()
    quick_may_finish = asyncio.Event()
    started = {"quick_task": asyncio.Event(), "endless_task": asyncio.Event()}

    @registry.job("quick_task", params=NoParams, max_attempts=1)
    async def quick_task(params: NoParams, ctx: JobContext) -> None:
        started["quick_task"].set()
        await quick_may_finish.wait()

    @registry.job("endless_task", params=NoParams, max_attempts=1)
    async def endless_task(params: NoParams, ctx: JobContext) -> None:
        started["endless_task"].set()
        await asyncio.Event().wait()

    with psycopg.connect(committed.url, autocommit=True) as conn:
        registry.sync(conn)
        jobs = {
            row[1]: DispatchedJob(id=row[0], job_type=row[1])
            for row in conn.execute(
                "insert into public.jobs (user_id, job_type)"
                " select %s, t from unnest(array['quick_task', 'endless_task']) t"
                " returning id, job_type",
                (DEMO_USER,),
            )
        }

    async with Store.open(committed.url) as store:
        # Room for the two only: the late job cannot be drained before the shutdown begins.
        executor = LocalExecutor(
            Runner(store, registry, "test-worker"), max_concurrency=2, max_per_type=4
        )
        assert await executor.submit(list(jobs.values())) == []
        for event in started.values():
            await event.wait()
        with psycopg.connect(committed.url, autocommit=True) as conn:
            late = conn.execute(
                "insert into public.jobs (user_id, job_type) values (%s, 'quick_task')"
                " returning id",
                (DEMO_USER,),
            ).fetchone()
        assert late is not None
        closing = asyncio.create_task(executor.aclose(grace_seconds=1.0))
        await asyncio.sleep(0)  # aclose stops taking work before its first await
        # A doorbell that rings while the executor shuts down is turned away, not run.
        turned_away = [DispatchedJob(id=late[0], job_type="quick_task")]
        assert await executor.submit(turned_away) == turned_away
        quick_may_finish.set()  # within the grace period
        await closing

    with psycopg.connect(committed.url) as conn:
        rows = {
            row[0]: row[1:]
            for row in conn.execute(
                "select job_type, status::text, attempt, max_attempts, errors from public.jobs"
                " where id = any(%s)",
                ([job.id for job in jobs.values()],),
            )
        }
        late_status = conn.execute(
            "select status::text, attempt from public.jobs where id = %s", (late[0],)
        ).fetchone()
    assert rows["quick_task"][:3] == ("completed", 1, 1)
    status, attempt, max_attempts, errors = rows["endless_task"]
    assert (status, attempt, max_attempts) == ("pending", 1, 2)
    assert [e["kind"] for e in errors] == ["released"]
    assert late_status == ("pending", 0)


async def test_one_users_long_jobs_leave_room_for_other_users(committed: Stack) -> None:
    registry = Registry()
    release = asyncio.Event()
    running: Counter[str] = Counter()
    most: Counter[str] = Counter()
    other_started = asyncio.Event()
    other = "00000000-0000-4000-8000-0000000000e1"

    @registry.job("long_task", params=NoParams, max_running_per_user=2)
    async def long_task(params: NoParams, ctx: JobContext) -> None:
        user = str(ctx.job.user_id)
        running[user] += 1
        most[user] = max(most[user], running[user])
        if user == other:
            other_started.set()
        await release.wait()
        running[user] -= 1

    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute("insert into auth.users (id, email) values (%s, 'e1@example.com')", (other,))
        registry.sync(conn)
        rows = conn.execute(
            "insert into public.jobs (user_id, job_type)"
            " select u, 'long_task' from unnest(array[%s, %s, %s, %s, %s, %s]::uuid[]) u"
            " returning id, job_type",
            ([DEMO_USER] * 5) + [other],
        ).fetchall()
    jobs = [DispatchedJob(id=row[0], job_type=row[1]) for row in rows]

    async with Store.open(committed.url) as store:
        executor = LocalExecutor(
            Runner(store, registry, "test-worker"), max_concurrency=8, max_per_type=3
        )
        try:
            assert await executor.submit(jobs) == []
            # The demo user's jobs came first; the other user's starts all the same.
            async with asyncio.timeout(10):
                await other_started.wait()
            release.set()
            for job in jobs:
                row = await wait_for_job(committed.url, job.id, finished, within=20)
                assert row["status"] == "completed"
        finally:
            await executor.aclose()
    assert most[DEMO_USER] == 2


class SlowClaimStore(Store):
    """The real store, whose claims commit and then take their time to come back."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.claiming = asyncio.Event()
        self.may_return = asyncio.Event()

    async def claim(self, ids: list[UUID], worker_id: str) -> list[ClaimedJob]:
        claimed = await super().claim(ids, worker_id)
        self.claiming.set()
        await self.may_return.wait()
        return claimed


async def test_a_shutdown_during_a_claim_releases_what_that_claim_took(committed: Stack) -> None:
    registry = Registry()

    @registry.job("steady_task", params=NoParams, max_attempts=1)
    async def steady_task(params: NoParams, ctx: JobContext) -> None:
        await asyncio.Event().wait()

    job_id = sync_and_insert(committed, registry, "steady_task")
    store = SlowClaimStore(new_pool(committed.url))
    async with store:
        executor = LocalExecutor(
            Runner(store, registry, "test-worker"), max_concurrency=3, max_per_type=3
        )
        await executor.submit([DispatchedJob(id=job_id, job_type="steady_task")])
        await store.claiming.wait()  # committed in the database, not yet back
        closing = asyncio.create_task(executor.aclose(grace_seconds=0.1))
        await asyncio.sleep(0)
        store.may_return.set()
        await closing
    job = await wait_for_job(committed.url, job_id, lambda r: r["status"] != "processing", within=5)
    assert (job["status"], job["attempt"], job["max_attempts"]) == ("pending", 1, 2)
