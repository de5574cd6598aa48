"""A runner outside the web app: what a Modal runner function does with the ids it is given."""

from __future__ import annotations

import asyncio
from uuid import UUID

from jobhook.config import Settings
from jobhook.registry import Registry
from jobhook.runner import Outcome, Runner
from jobhook.runtime import new_runner

# How many jobs one runner input runs at once: a spawn per doorbell and tier, each draining up
# to this many (a Modal container runs several inputs: see @modal.concurrent in modal_app.py).
DRAIN_SLOTS = 25


async def run_jobs(
    job_ids: list[str], registry: Registry, settings: Settings, tier: str = "cpu"
) -> list[Outcome]:
    """Run what one doorbell announced for `tier`, then drain that tier's due jobs.

    The announced ids that fit are claimed first; ids that cannot be claimed (already running
    elsewhere, finished, not due) are skipped, so a spawn that Modal retries or that a
    duplicated webhook caused runs nothing twice. Heartbeats start with each claim, and the web
    function never claims: a lease begins only in the runner that holds the job.
    """
    runner = await _runner(settings, registry)
    job_types = [job_type.name for job_type in registry if job_type.tier == tier]
    stop = asyncio.Event()
    work = asyncio.ensure_future(
        runner.drain(job_types, DRAIN_SLOTS, [UUID(job_id) for job_id in job_ids], stop)
    )
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        # Modal stops a container (a deploy, a scale-down, preemption) with SIGINT, which
        # cancels each running input, and kills it 30 s later. Within that, the attempts get
        # the grace period to finish, nothing new is claimed, and what still runs after it is
        # released.
        stop.set()
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
