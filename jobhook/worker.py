"""A runner outside the web app: what a Modal runner function does with the ids it is given."""

from __future__ import annotations

import asyncio
import os
import socket
from uuid import UUID

from jobhook.config import Settings
from jobhook.registry import Registry
from jobhook.runner import Outcome, Runner
from jobhook.store import Store


async def run_jobs(job_ids: list[str], registry: Registry, settings: Settings) -> list[Outcome]:
    """Claim the jobs in one round trip and run those claimed, concurrently.

    Ids that cannot be claimed (already running elsewhere, finished, not due) are skipped, so a
    spawn that Modal retries or that a duplicated webhook caused runs nothing twice.
    """
    worker_id = (
        settings.worker_id
        or os.environ.get("MODAL_TASK_ID")
        or f"{socket.gethostname()}:{os.getpid()}"
    )
    runner = Runner(await _store(settings.database_url), registry, worker_id)
    return await runner.run_many([UUID(job_id) for job_id in job_ids])


_stores: dict[tuple[str, int], Store] = {}


async def _store(database_url: str) -> Store:
    """One pool per container and event loop, kept open between inputs: a Modal container runs
    many inputs, and opening connections per input would cost more than most jobs."""
    key = (database_url, id(asyncio.get_running_loop()))
    if key not in _stores:
        store = Store.open(database_url, min_size=1, max_size=8)
        await store.pool.open()
        _stores[key] = store
    return _stores[key]
