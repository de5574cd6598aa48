"""sample_task: the pattern every job type follows, and the one the demo and the tests run."""

from __future__ import annotations

import asyncio
from typing import Any

from pydantic import BaseModel, Field, JsonValue

from jobhook import JobContext, JobError, job


class SampleParams(BaseModel):
    steps: int = Field(3, ge=1, le=10_000, description="how many steps to take")
    step_seconds: float = Field(0.5, ge=0, le=600, description="how long each step takes")
    fail_times: int = Field(
        0, ge=0, le=100, description="fail the first N attempts with a retryable error"
    )
    result: JsonValue = Field(None, description="echoed back in the job's result")


@job(timeout_seconds=600, max_attempts=3, backoff_base_seconds=1.0)
async def sample_task(params: SampleParams, ctx: JobContext) -> dict[str, Any]:
    """Take `steps` steps of `step_seconds`, reporting progress; echo `result`."""
    if ctx.attempt <= params.fail_times:
        raise JobError(f"failing attempt {ctx.attempt} of the first {params.fail_times}, as asked")
    for step in range(1, params.steps + 1):
        ctx.raise_if_cancelled()
        await asyncio.sleep(params.step_seconds)
        await ctx.progress(100 * step / params.steps, f"step {step} of {params.steps}")
    return {"steps": params.steps, "attempt": ctx.attempt, "result": params.result}
