"""The local executor under a burst larger than its line: nothing waits for the sweep."""

from __future__ import annotations

import asyncio

import psycopg
import pytest
from pydantic import BaseModel

from jobhook.context import JobContext
from jobhook.executor import Dispatched, LocalExecutor
from jobhook.registry import Registry
from jobhook.runner import Runner
from jobhook.store import Store
from tests.conftest import DEMO_USER, Stack, finished, wait_for_job

pytestmark = pytest.mark.commits


class NoParams(BaseModel):
    pass


async def test_jobs_turned_away_by_a_full_line_are_claimed_back_when_there_is_room(
    committed: Stack,
) -> None:
    registry = Registry()
    running = 0
    most_at_once = 0

    @registry.job("burst_task", params=NoParams)
    async def burst_task(params: NoParams, ctx: JobContext) -> None:
        nonlocal running, most_at_once
        running += 1
        most_at_once = max(most_at_once, running)
        await asyncio.sleep(0.02)
        running -= 1

    with psycopg.connect(committed.url, autocommit=True) as conn:
        registry.sync(conn)
        # No delivery worker and no sweep run here: only the executor can start these jobs.
        ids = [
            row[0]
            for row in conn.execute(
                "insert into public.jobs (user_id, job_type)"
                " select %s, 'burst_task' from generate_series(1, 20) returning id",
                (DEMO_USER,),
            )
        ]

    async with Store.open(committed.url) as store:
        executor = LocalExecutor(
            Runner(store, registry, "test-worker"), max_concurrency=3, max_per_type=3, max_waiting=4
        )
        try:
            refused = await executor.submit([Dispatched(i, "burst_task") for i in ids])
            assert len(refused) == 16
            for job_id in ids:
                row = await wait_for_job(committed.url, job_id, finished, within=20)
                assert row["status"] == "completed"
        finally:
            await executor.aclose()

    assert most_at_once == 3
    with psycopg.connect(committed.url) as conn:
        attempts = conn.execute("select distinct attempt from public.jobs").fetchall()
    assert attempts == [(1,)]
