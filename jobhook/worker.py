"""A runner outside the web app: what a Modal runner function does with the ids it is given."""

from __future__ import annotations

import asyncio
from uuid import UUID

from jobhook.config import Settings
from jobhook.linger import Linger
from jobhook.registry import Registry
from jobhook.runner import Outcome, Runner
from jobhook.runtime import new_runner

# How many jobs one runner input runs at once: a spawn per doorbell and tier, each draining up
# to this many (a Modal container runs several inputs: see @modal.concurrent in modal_app.py).
DRAIN_SLOTS = 25


# How long one input claims. A job claimed at the end of it may still run its whole timeout,
# and the function's own timeout is the tier's longest job timeout plus a minute (modal_app.py):
# an input that went on claiming under a steady stream would be killed by Modal mid-attempt.
# When the window closes the input stops claiming and watching; the next doorbell spawns
# another.
CLAIM_WINDOW_SECONDS = 30.0


async def run_jobs(
    job_ids: list[str],
    registry: Registry,
    settings: Settings,
    tier: str = "cpu",
    claim_window: float = CLAIM_WINDOW_SECONDS,
) -> list[Outcome]:
    """Run what one doorbell announced for `tier`, then drain that tier's due jobs.

    The announced ids that fit are claimed first; ids that cannot be claimed (already running
    elsewhere, finished, not due) are skipped, so a spawn that Modal retries or that a
    duplicated webhook caused runs nothing twice. Heartbeats start with each claim, and the web
    function never claims: a lease begins only in the runner that holds the job.

    One input per container at a time lingers (jobhook.linger) once its claims come less than
    a linger apart: while it watches, inserts of the tier's types ring no doorbell, so they
    spawn no input.
    """
    runner = await _runner(settings, registry)
    job_types = [job_type.name for job_type in registry if job_type.tier == tier]
    linger = _linger(settings, runner, tier)
    stop = asyncio.Event()
    window = asyncio.get_running_loop().call_later(claim_window, stop.set)
    work = asyncio.ensure_future(
        runner.drain(job_types, DRAIN_SLOTS, [UUID(job_id) for job_id in job_ids], stop, linger)
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
    finally:
        window.cancel()


# One linger per container and tier, which one input at a time holds while it watches.
_lingers: dict[tuple[int, str], Linger] = {}


def _linger(settings: Settings, runner: Runner, tier: str) -> Linger | None:
    if settings.drain_linger_ms == 0:
        return None
    key = (id(runner), tier)
    if key not in _lingers:
        _lingers[key] = Linger(runner.store, settings.drain_linger_ms, settings.drain_poll_ms)
    return _lingers[key]


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
