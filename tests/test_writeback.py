"""Completions written back in batches: alone after a quiet spell, together under a stream."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.types.json import Jsonb

from jobhook.store import ClaimedJob, Store, new_pool
from jobhook.writeback import Completions
from tests.conftest import DEMO_USER, Stack

pytestmark = pytest.mark.commits


class CountingStore(Store):
    """The real store, remembering how many jobs each completion statement carried."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.statements: list[int] = []

    async def complete_many(self, outcomes: Jsonb) -> list[UUID]:
        self.statements.append(len(outcomes.obj))
        return await super().complete_many(outcomes)


@dataclass
class Claimed:
    store: CountingStore
    jobs: list[ClaimedJob]
    completions: Completions


@contextlib.asynccontextmanager
async def claimed(url: str, count: int, interval: float) -> AsyncIterator[Claimed]:
    """`count` jobs inserted and claimed, and completions to write them back with."""
    with psycopg.connect(url, autocommit=True) as conn:
        ids = [
            row[0]
            for row in conn.execute(
                "insert into public.jobs (user_id, job_type)"
                " select %s, 'sample_task' from generate_series(1, %s) returning id",
                (DEMO_USER, count),
            )
        ]
    store = CountingStore(new_pool(url))
    async with store:
        jobs = await store.claim(ids, "test-worker")
        assert len(jobs) == count
        completions = Completions(store, interval=interval)
        try:
            yield Claimed(store, jobs, completions)
        finally:
            await completions.aclose()


async def test_a_stream_of_completions_shares_statements_and_each_learns_its_fate(
    committed: Stack,
) -> None:
    async with claimed(committed.url, 6, interval=1.0) as run:
        # The first, after a quiet spell, goes out at once and alone.
        assert await run.completions.complete(run.jobs[0], {"n": 0}, None) is True
        # The rest arrive one by one within the interval: they wait and share one statement.
        waiting = []
        for n, job in enumerate(run.jobs[1:], start=1):
            waiting.append(asyncio.create_task(run.completions.complete(job, {"n": n}, "done")))
            await asyncio.sleep(0.01)
        assert await asyncio.gather(*waiting) == [True] * 5
    assert run.store.statements == [1, 5]

    with psycopg.connect(committed.url) as conn:
        rows: dict[UUID, Any] = dict(
            conn.execute(
                "select id, result from public.jobs where status = 'completed' and progress = 100"
            ).fetchall()
        )
    assert rows == {job.id: {"n": n} for n, job in enumerate(run.jobs)}


async def test_an_attempt_no_longer_ours_is_told_so_inside_a_shared_statement(
    committed: Stack,
) -> None:
    async with claimed(committed.url, 2, interval=0.5) as run:
        ours, taken_over = run.jobs
        with psycopg.connect(committed.url, autocommit=True) as conn:
            # The lease expired and the sweep moved the job on: this attempt may not complete it.
            conn.execute(
                "update public.jobs set attempt = attempt + 1 where id = %s", (taken_over.id,)
            )
        results = await asyncio.gather(
            run.completions.complete(ours, None, None),
            run.completions.complete(taken_over, None, None),
        )
    assert list(results) == [True, False]
    assert run.store.statements == [2]


async def test_completions_waiting_for_company_are_written_when_the_runner_stops(
    committed: Stack,
) -> None:
    async with claimed(committed.url, 2, interval=60) as run:
        first, second = run.jobs
        assert await run.completions.complete(first, None, None) is True
        waiting = asyncio.create_task(run.completions.complete(second, {"last": True}, None))
        await asyncio.sleep(0.05)
        assert not waiting.done()  # a minute from its company, as far as it knows
        await run.completions.aclose()
        assert await asyncio.wait_for(waiting, 5) is True
    with psycopg.connect(committed.url) as conn:
        row = conn.execute(
            "select status::text, result from public.jobs where id = %s", (second.id,)
        ).fetchone()
    assert row == ("completed", {"last": True})
