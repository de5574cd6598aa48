"""A runner outside the web app: what a Modal runner function does with the ids it is given."""

from __future__ import annotations

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
    async with Store.open(settings.database_url, min_size=1, max_size=4) as store:
        runner = Runner(store, registry, worker_id)
        return await runner.run_many([UUID(job_id) for job_id in job_ids])
