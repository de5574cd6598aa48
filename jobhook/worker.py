"""A runner outside the web app: what a Modal runner function does with the ids it is given."""

from __future__ import annotations

import asyncio
from uuid import UUID

from jobhook.config import Settings
from jobhook.registry import Registry
from jobhook.runner import Outcome, Runner
from jobhook.runtime import new_runner


async def run_jobs(job_ids: list[str], registry: Registry, settings: Settings) -> list[Outcome]:
    """Claim the jobs in one round trip and run those claimed, concurrently.

    Ids that cannot be claimed (already running elsewhere, finished, not due) are skipped, so a
    spawn that Modal retries or that a duplicated webhook caused runs nothing twice.
    """
    runner = await _runner(settings, registry)
    work = asyncio.ensure_future(runner.run_many([UUID(job_id) for job_id in job_ids]))
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        # Modal stops a container (a deploy, a scale-down, preemption) with SIGINT, which
        # cancels each running input, and kills it 30 s later. Within that, the attempts get
        # the grace period to finish; the runner releases what is still running after it.
        _, running = await asyncio.wait([work], timeout=settings.shutdown_grace_seconds)
        if running:
            work.cancel()
            await asyncio.gather(work, return_exceptions=True)
        raise


_runners: dict[tuple[str, int, int], Runner] = {}


async def _runner(settings: Settings, registry: Registry) -> Runner:
    """One runner (and pool) per container and event loop, kept between inputs: a Modal
    container runs many inputs, and opening connections per input would cost more than most
    jobs."""
    key = (settings.database_url, id(registry), id(asyncio.get_running_loop()))
    if key not in _runners:
        runner = new_runner(settings, registry, min_connections=1)
        await runner.store.pool.open()
        _runners[key] = runner
    return _runners[key]
