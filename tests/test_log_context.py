"""Each runner log line carries its own job's id and the ids of the delivery that rang for it,
not those of whichever webhook request happened to start the executor's claimer."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import pytest

from jobhook.devstack.stack import Served
from tests.conftest import Stack, finished, insert_job, wait_for_job

pytestmark = pytest.mark.commits


async def test_runner_lines_carry_their_own_job_and_delivery(
    app_stack: Served, committed: Stack, json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    executor = app_stack.app.state.runtime.executor
    # A job a watching runner finds by its count (jobhook.linger) comes with no delivery: this
    # test is about the deliveries' context, so every job here must come by its own doorbell.
    executor.linger = None

    async def drained() -> None:
        # A job the executor drains from the table (jobhook.claim_due) came with no delivery:
        # each job here is inserted once it has nothing left to drain, so its own doorbell
        # brings it.
        async with asyncio.timeout(10):
            while executor._owed:  # noqa: ASYNC110
                await asyncio.sleep(0.01)

    warm_up = insert_job(committed.url, "sample_task", {"steps": 1, "step_seconds": 0})
    await wait_for_job(committed.url, warm_up, finished)
    jobs = []
    for n in range(3):  # one doorbell each: the next job is inserted once the last has finished
        await drained()
        job_id = insert_job(
            committed.url, "sample_task", {"steps": 1, "step_seconds": 0, "result": n}
        )
        await wait_for_job(committed.url, job_id, finished)
        jobs.append(str(job_id))

    # The row reads finished once the completion commits; the runner logs the attempt's end
    # just after, so the last job's line may still be on its way.
    async with asyncio.timeout(5):
        while not set(jobs) <= {  # noqa: ASYNC110
            line.get("job_id") for line in json_logs() if line.get("event") == "attempt finished"
        }:
            await asyncio.sleep(0.01)
    lines = json_logs()
    doorbells = [
        line for line in lines
        if line.get("event") == "request" and line.get("path") == "/webhooks/jobs"
    ]  # fmt: skip
    finished_lines = {
        line["job_id"]: line for line in lines if line.get("event") == "attempt finished"
    }
    assert set(jobs) <= set(finished_lines), lines
    request_ids = [finished_lines[job]["request_id"] for job in jobs]
    # Three jobs, three deliveries, three ids: each a doorbell request's own.
    assert len(set(request_ids)) == 3, request_ids
    assert set(request_ids) <= {line["request_id"] for line in doorbells}
    delivery_ids = [finished_lines[job].get("delivery_id") for job in jobs]
    assert all(delivery_ids), delivery_ids
    assert len(set(delivery_ids)) == 3, delivery_ids
    # No runner line of one job names another job's delivery.
    by_job: dict[str, set[str]] = {}
    for line in lines:
        if line.get("job_id") in jobs and "request_id" in line:
            by_job.setdefault(line["job_id"], set()).add(line["request_id"])
    assert all(len(ids) == 1 for ids in by_job.values()), by_job
