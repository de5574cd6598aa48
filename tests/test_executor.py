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
from jobhook.executor import Dispatched, LocalExecutor
from jobhook.registry import Registry
from jobhook.runner import Runner
from jobhook.store import ClaimedJob, Store, new_pool
from tests.conftest import DEMO_USER, Stack, finished, wait_for_job

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
            Dispatched(row[0], row[1])
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

    with psycopg.connect(committed.url, autocommit=True) as conn:
        registry.sync(conn)
        row = conn.execute(
            "insert into public.jobs (user_id, job_type) values (%s, 'steady_task') returning id",
            (DEMO_USER,),
        ).fetchone()
    assert row is not None

    store = DroppingStore(new_pool(committed.url))
    async with store:
        executor = LocalExecutor(
            Runner(store, registry, "test-worker"), max_concurrency=3, max_per_type=3
        )
        try:
            assert await executor.submit([Dispatched(row[0], "steady_task")]) == []
            # No sweep runs here: only a second claim can start the job.
            job = await wait_for_job(committed.url, row[0], finished, within=10)
        finally:
            await executor.aclose()
    assert store.dropped == 1
    assert (job["status"], job["attempt"]) == ("completed", 1)
