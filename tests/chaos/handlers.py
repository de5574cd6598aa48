"""Job types for the chaos suite, run by the in-process stack and by tests.chaos.app_process."""

from __future__ import annotations

import asyncio
import os
from typing import Any

from psycopg_pool import AsyncConnectionPool
from pydantic import BaseModel, Field

from jobhook import JobContext
from jobhook.registry import Registry

registry = Registry()
_recorder: AsyncConnectionPool[Any] | None = None
_opening = asyncio.Lock()


async def recorder() -> AsyncConnectionPool[Any]:
    global _recorder
    async with _opening:
        if _recorder is None:
            pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
                os.environ["CHAOS_DATABASE_URL"],
                min_size=1,
                max_size=8,
                kwargs={"autocommit": True},
                # The restart case kills every connection: a dead one must not fail a record.
                check=AsyncConnectionPool.check_connection,
                open=False,
            )
            await pool.open()
            _recorder = pool
    return _recorder


async def record(ctx: JobContext) -> None:
    """Insert (job, attempt) into chaos_executions: the proof of how often each attempt ran."""
    async with (await recorder()).connection() as conn:
        await conn.execute(
            "insert into public.chaos_executions (job_id, attempt) values (%s, %s)",
            (ctx.job_id, ctx.attempt),
        )


class SleepyParams(BaseModel):
    seconds: float = 30
    sleep_on_attempts: list[int] = Field(default_factory=lambda: [1])


@registry.job(timeout_seconds=120, max_attempts=3, backoff_base_seconds=0.1)
async def sleepy(params: SleepyParams, ctx: JobContext) -> dict[str, int]:
    """Sleep on the given attempts (long enough to be killed mid-job), return at once on others."""
    await record(ctx)
    await ctx.progress(10, "started")
    if ctx.attempt in params.sleep_on_attempts:
        await asyncio.sleep(params.seconds)
    return {"attempt": ctx.attempt}


@registry.job(name="sleepy_once", timeout_seconds=120, max_attempts=1)
async def sleepy_once(params: SleepyParams, ctx: JobContext) -> dict[str, int]:
    """`sleepy` with a budget of one attempt: losing that attempt would fail the job."""
    return await sleepy(params, ctx)


class FlakyParams(BaseModel):
    n: int
    fail_per_mille: int = 300


@registry.job(
    timeout_seconds=60, max_attempts=5, backoff_base_seconds=0.05, backoff_max_seconds=0.2
)
async def flaky(params: FlakyParams, ctx: JobContext) -> dict[str, int]:
    """Fail some attempts with a retryable error, chosen by a hash of (n, attempt)."""
    await record(ctx)
    if (params.n * 7919 + ctx.attempt * 104729) % 1000 < params.fail_per_mille:
        raise RuntimeError(f"planned failure of attempt {ctx.attempt}")
    return {"n": params.n, "attempt": ctx.attempt}
