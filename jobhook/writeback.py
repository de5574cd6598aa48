"""Write-backs in batches: attempts that finish together are completed by one statement.

A runner finishing many short jobs would otherwise spend one transaction (and one WAL flush) per
job on `complete`. Outcomes are queued and a single flusher sends whatever has gathered, with
flushes at least `interval` apart: after a quiet spell a completion goes out at once, alone;
under a steady stream of jobs, each arriving alone, they wait at most `interval` and share a
statement; under heavy load hundreds share one. Each caller still learns whether its own attempt
was completed.
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb

from jobhook.store import ClaimedJob, Store

MAX_BATCH = 1000
# The longest a completion waits for company. Short next to what a person watching a job can
# notice, long enough that 500 jobs/s arriving one by one share a statement ~5 at a time.
FLUSH_INTERVAL = 0.01


@dataclass
class _Completion:
    job: ClaimedJob
    result: Any
    message: str | None
    done: asyncio.Future[bool]


class Completions:
    def __init__(self, store: Store, interval: float = FLUSH_INTERVAL) -> None:
        self.store = store
        self.interval = interval
        self._queue: list[_Completion] = []
        self._wake = asyncio.Event()
        self._flusher: asyncio.Task[None] | None = None

    async def complete(self, job: ClaimedJob, result: Any, message: str | None) -> bool:
        """True when the attempt was completed; False when it was no longer this runner's."""
        if self._flusher is None or self._flusher.done():
            self._flusher = asyncio.create_task(self._flush_forever())
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.append(_Completion(job, result, message, done))
        self._wake.set()
        return await done

    async def _flush_forever(self) -> None:
        loop = asyncio.get_running_loop()
        last_flush = float("-inf")
        while True:
            await self._wake.wait()
            self._wake.clear()
            if not self._queue:
                continue
            if (wait := last_flush + self.interval - loop.time()) > 0:
                await asyncio.sleep(wait)
            last_flush = loop.time()
            await self._drain()

    async def _flush(self, batch: list[_Completion]) -> None:
        outcomes = [
            {
                "id": str(item.job.id),
                "attempt": item.job.attempt,
                "result": item.result,
                "progress_message": item.message,
            }
            for item in batch
        ]
        try:
            completed: set[UUID] = set(await self.store.complete_many(Jsonb(outcomes)))
        except psycopg.DataError as exc:
            if len(batch) > 1:
                # One result the database refuses must not fail its neighbours: one at a time.
                for item in batch:
                    await self._flush([item])
                return
            if not batch[0].done.done():
                batch[0].done.set_exception(exc)
            return
        except Exception as exc:
            for item in batch:
                if not item.done.done():
                    item.done.set_exception(exc)
            return
        for item in batch:
            if not item.done.done():
                item.done.set_result(item.job.id in completed)

    async def aclose(self) -> None:
        """Stop flushing; what was still waiting for company is written now: those handlers
        finished, and their jobs must not run again."""
        if self._flusher is not None:
            self._flusher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._flusher
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self._drain(), timeout=5)

    async def _drain(self) -> None:
        while self._queue:
            batch, self._queue = self._queue[:MAX_BATCH], self._queue[MAX_BATCH:]
            await self._flush(batch)
