"""Job types that exist only in the tests, in a registry of their own next to sample_task."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import psycopg
from pydantic import BaseModel, Field

import handlers
from jobhook import JobContext, PermanentJobError
from jobhook.registry import Registry
from jobhook.registry import registry as default_registry

registry = Registry()
handlers.load_all()
for job_type in default_registry:
    registry.add(job_type)

# Gates the tests open to let a given (key, attempt) finish.
gates: defaultdict[tuple[str, int], asyncio.Event] = defaultdict(asyncio.Event)
started: defaultdict[str, list[int]] = defaultdict(list)
database_url: str = ""


class GateParams(BaseModel):
    key: str
    block_attempts: list[int] = Field(default_factory=lambda: [1])


@registry.job(timeout_seconds=60, max_attempts=3, backoff_base_seconds=0.1)
async def gated(params: GateParams, ctx: JobContext) -> dict[str, Any]:
    """Wait for the test to open the gate of this attempt, if it is one that blocks."""
    started[params.key].append(ctx.attempt)
    if ctx.attempt in params.block_attempts:
        await gates[(params.key, ctx.attempt)].wait()
    return {"attempt": ctx.attempt}


class RecordParams(BaseModel):
    fail_rate: float = 0.0
    seed: int = 0


@registry.job(
    timeout_seconds=60, max_attempts=5, backoff_base_seconds=0.05, backoff_max_seconds=0.2
)
async def recorded(params: RecordParams, ctx: JobContext) -> None:
    """Record each execution in a table; fail some attempts, deterministically by seed."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "insert into test_executions (job_id, attempt) values (%s, %s)",
            (ctx.job_id, ctx.attempt),
        )
    if (params.seed * 7919 + ctx.attempt * 104729) % 1000 < params.fail_rate * 1000:
        raise RuntimeError(f"planned failure of attempt {ctx.attempt}")


class SleepParams(BaseModel):
    seconds: float


@registry.job(timeout_seconds=1, max_attempts=1)
async def slow(params: SleepParams, ctx: JobContext) -> None:
    """Sleep past its own 1 s timeout."""
    await asyncio.sleep(params.seconds)


class Nothing(BaseModel):
    pass


@registry.job(timeout_seconds=60, max_attempts=1)
async def upstream_timeout(params: Nothing, ctx: JobContext) -> None:
    """Fail with a TimeoutError of its own, long before its 60 s timeout."""
    raise TimeoutError("the upstream API did not answer within 5 s")


@registry.job(max_attempts=3)
async def refuses(params: Nothing, ctx: JobContext) -> None:
    """Fail for good on the first attempt."""
    raise PermanentJobError("the input can never work: nothing to do")


@registry.job(max_attempts=1)
def blocking(params: Nothing, ctx: JobContext) -> dict[str, str]:
    """A synchronous handler, run in a thread, reporting progress from there."""
    ctx.report(50, "half way")
    return {"ran": "in a thread"}


class ResultParams(BaseModel):
    kind: str


@registry.job(max_attempts=2)
async def odd_result(params: ResultParams, ctx: JobContext) -> Any:
    """Return a result the database cannot store (NaN, NUL), or a fine one."""
    if params.kind == "nan":
        return {"x": float("nan")}
    if params.kind == "nul":
        return {"x": "a\x00b"}
    return {"x": 1}


@registry.job(max_attempts=1)
async def cancels_itself(params: Nothing, ctx: JobContext) -> None:
    """Await a task it cancelled itself, which raises CancelledError in the handler."""
    task = asyncio.create_task(asyncio.sleep(60))
    task.cancel()
    await task
