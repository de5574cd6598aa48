"""Where a dispatched job runs: bounded tasks in this process, or a Modal function per tier.

The webhook hands jobs to an executor and answers at once, so `submit` never waits for a job to
run. A full local executor refuses instead of queueing in memory: the job stays pending in the
database, where nothing is lost, and the sweep rings for it again.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol
from uuid import UUID

import structlog

from jobhook import metrics
from jobhook.registry import Registry
from jobhook.runner import Runner

log = structlog.get_logger("jobhook.executor")


@dataclass(frozen=True)
class Dispatched:
    id: UUID
    job_type: str


class Executor(Protocol):
    async def submit(self, jobs: Sequence[Dispatched]) -> list[Dispatched]:
        """Start the jobs; return those refused (left pending for the sweep)."""
        ...

    async def aclose(self) -> None: ...


class LocalExecutor:
    """Runs jobs as asyncio tasks in this process, bounded overall and per job type."""

    def __init__(self, runner: Runner, *, max_concurrency: int, max_per_type: int) -> None:
        self.runner = runner
        self.max_concurrency = max_concurrency
        self.max_per_type = max_per_type
        self._running: Counter[str] = Counter()
        self._tasks: set[asyncio.Task[Any]] = set()

    @property
    def running(self) -> int:
        return sum(self._running.values())

    async def submit(self, jobs: Sequence[Dispatched]) -> list[Dispatched]:
        accepted: list[Dispatched] = []
        refused: list[Dispatched] = []
        for job in jobs:
            if (
                self.running >= self.max_concurrency
                or self._running[job.job_type] >= self.max_per_type
            ):
                refused.append(job)
                metrics.jobs_deferred.labels(job.job_type).inc()
                continue
            self._running[job.job_type] += 1
            accepted.append(job)
        if accepted:
            # One claim for the whole batch: one round trip however many jobs the doorbell named.
            self._start(self._run_batch(accepted))
        return refused

    def _start(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _run_batch(self, jobs: list[Dispatched]) -> None:
        try:
            claimed = await self.runner.store.claim([job.id for job in jobs], self.runner.worker_id)
            claimed_ids = {job.id for job in claimed}
            for job in jobs:
                if job.id not in claimed_ids:
                    self._running[job.job_type] -= 1
            await asyncio.gather(*(self._execute(job) for job in claimed))
        except Exception:
            log.exception("batch failed before its jobs ran; the sweep will rescue them")
            for job in jobs:
                self._running[job.job_type] = max(0, self._running[job.job_type] - 1)

    async def _execute(self, job: Any) -> None:
        try:
            await self.runner.execute(job)
        finally:
            self._running[job.job_type] -= 1

    async def aclose(self) -> None:
        """Stop running jobs; their leases expire and the sweep hands them to the next runner."""
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class ModalExecutor:
    """Spawns the Modal runner function of each job's tier, a bounded batch per call."""

    def __init__(self, functions: Mapping[str, Any], registry: Registry, batch_size: int = 25):
        self.functions = functions
        self.registry = registry
        self.batch_size = batch_size

    async def submit(self, jobs: Sequence[Dispatched]) -> list[Dispatched]:
        by_tier: dict[str, list[str]] = {}
        refused = []
        for job in jobs:
            job_type = self.registry.get(job.job_type)
            tier = job_type.tier if job_type else "cpu"
            if tier not in self.functions:
                log.error("no Modal function for tier", tier=tier, job_type=job.job_type)
                refused.append(job)
                continue
            by_tier.setdefault(tier, []).append(str(job.id))
        for tier, ids in by_tier.items():
            for start in range(0, len(ids), self.batch_size):
                await self.functions[tier].spawn.aio(ids[start : start + self.batch_size])
        return refused

    async def aclose(self) -> None:
        return None
