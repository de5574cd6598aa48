"""One timer per attempt: it starts the heartbeat at a third of the lease, then ends the attempt
at its timeout."""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from pydantic import BaseModel

from jobhook.context import JobContext
from jobhook.registry import Registry
from jobhook.runner import Outcome, Runner
from jobhook.store import ClaimedJob, LeaseExtended, Store, new_pool
from tests.conftest import DEMO_USER, Stack

pytestmark = pytest.mark.commits


class BeatCountingStore(Store):
    """The real store, counting the heartbeats it writes."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.beats = 0

    async def heartbeat(
        self, job: ClaimedJob, progress: int | None = None, message: str | None = None
    ) -> LeaseExtended | None:
        self.beats += 1
        return await super().heartbeat(job, progress, message)


class Nothing(BaseModel):
    pass


@dataclass
class Attempt:
    outcome: Outcome
    beats: int
    status: str
    error: str | None


async def run_one_attempt(url: str, registry: Registry) -> Attempt:
    """Insert a one_shot job, claim it with a 3 s lease (a heartbeat is due after 1 s) and run
    the attempt through the registry's handler."""
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute(
            "insert into public.jobs (user_id, job_type) values (%s, 'one_shot') returning id",
            (DEMO_USER,),
        ).fetchone()
    assert row is not None
    store = BeatCountingStore(new_pool(url))
    async with store:
        [job] = await store.claim([row[0]], "test-worker")
        job = dataclasses.replace(job, lease_expires_at=datetime.now(UTC) + timedelta(seconds=3))
        runner = Runner(store, registry, "test-worker")
        try:
            async with asyncio.timeout(20):
                outcome = await runner.execute(job)
        finally:
            await runner.completions.aclose()
    with psycopg.connect(url) as conn:
        found = conn.execute(
            "select status::text, error from public.jobs where id = %s", (job.id,)
        ).fetchone()
    assert found is not None
    return Attempt(outcome, store.beats, found[0], found[1])


async def test_a_handler_past_its_first_heartbeat_is_still_stopped_at_its_timeout(
    committed: Stack,
) -> None:
    registry = Registry()
    handler_started = asyncio.Event()

    @registry.job("one_shot", timeout_seconds=2, max_attempts=1)
    async def sleeps(params: Nothing, ctx: JobContext) -> None:
        handler_started.set()
        await asyncio.sleep(30)

    attempt = await run_one_attempt(committed.url, registry)  # heartbeat at 1 s, timeout at 2 s
    assert handler_started.is_set()
    assert attempt.outcome is Outcome.FAILED
    assert attempt.beats >= 1
    assert (attempt.status, attempt.error) == ("failed", "timed out after 2 s")


async def test_a_handler_that_outlives_its_timeout_keeps_its_lease(committed: Stack) -> None:
    """The timeout falls before the first heartbeat; the handler takes its time to stop."""
    registry = Registry()

    @registry.job("one_shot", timeout_seconds=1, max_attempts=1)
    async def slow_to_stop(params: Nothing, ctx: JobContext) -> dict[str, bool]:
        try:
            await asyncio.sleep(30)
        except asyncio.CancelledError:
            await asyncio.sleep(2)  # cleaning up, past the first heartbeat's time
        return {"cleaned_up": True}

    attempt = await run_one_attempt(committed.url, registry)  # heartbeat and timeout at 1 s
    # The handler swallowed the cancel and returned: its result stands, as with asyncio.timeout.
    assert (attempt.outcome, attempt.status) == (Outcome.COMPLETED, "completed")
    assert attempt.beats >= 1
