"""`jobhook dev` keeps its delivery worker running, and passes it the pacing asked for."""

from __future__ import annotations

import asyncio

import pytest

from jobhook.devstack.stack import delivery_options, supervise


async def test_the_supervisor_starts_a_failed_worker_again() -> None:
    starts: list[int] = []
    running = asyncio.Event()

    async def worker() -> None:
        starts.append(len(starts))
        if len(starts) == 1:
            raise RuntimeError("died")
        if len(starts) == 2:
            return  # ended without a failure: started again all the same
        running.set()
        await asyncio.Event().wait()

    task = asyncio.create_task(supervise("worker", worker, delay=0))
    try:
        await asyncio.wait_for(running.wait(), timeout=10)
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
    assert starts == [0, 1, 2]


def test_pacing_comes_from_the_environment() -> None:
    assert delivery_options({}) == {}
    assert delivery_options({"JOBHOOK_DEV_NET_PACED": "1", "JOBHOOK_DEV_NET_LATENCY_MS": "80"}) == {
        "paced": True,
        "latency": 0.08,
    }
    with pytest.raises(ValueError, match="between 0 and 60000"):
        delivery_options({"JOBHOOK_DEV_NET_LATENCY_MS": "-1"})
