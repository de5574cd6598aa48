"""What a handler receives besides its parameters: progress, cancellation, a logger."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from uuid import UUID

import structlog

from jobhook.store import ClaimedJob


class JobCancelled(Exception):
    """Raised by `JobContext.raise_if_cancelled()` once the owner asked to cancel."""


_log = structlog.get_logger("jobhook.runner")


@dataclass
class JobContext:
    job: ClaimedJob
    # Set by the runner's heartbeat when the owner sets cancel_requested_at.
    cancel_requested: asyncio.Event = field(default_factory=asyncio.Event)
    # Progress not yet written; the heartbeat writes the latest in its turn and drops the rest.
    # The latest message reported, written with the result even if its heartbeat was cut short.
    last_message: str | None = None
    _pending_progress: tuple[int, str | None] | None = None
    _progress_reported: asyncio.Event = field(default_factory=asyncio.Event)
    _loop: asyncio.AbstractEventLoop = field(default_factory=asyncio.get_running_loop)
    # Called at each report, so the heartbeat starts as soon as there is progress to write.
    on_progress: Callable[[], None] | None = None
    _log: structlog.stdlib.BoundLogger | None = None

    @property
    def log(self) -> structlog.stdlib.BoundLogger:
        """A logger carrying job_id, job_type and attempt. Bound on first use: most attempts
        never log a line of their own, and binding costs as much as the rest of a no-op job's
        bookkeeping."""
        if self._log is None:
            job = self.job
            self._log = _log.bind(job_id=str(job.id), job_type=job.job_type, attempt=job.attempt)
        return self._log

    @property
    def job_id(self) -> UUID:
        return self.job.id

    @property
    def attempt(self) -> int:
        return self.job.attempt

    @property
    def user_id(self) -> UUID | None:
        return self.job.user_id

    @property
    def cancelled(self) -> bool:
        return self.cancel_requested.is_set()

    def raise_if_cancelled(self) -> None:
        if self.cancelled:
            raise JobCancelled(f"job {self.job_id} was cancelled by its owner")

    async def progress(self, percent: float, message: str | None = None) -> None:
        """Report progress (0 to 100) and an optional message, visible on the row at once.

        Calls are coalesced: a handler may report as often as it likes, and the row receives the
        latest value at most once per JOBHOOK_PROGRESS_INTERVAL_SECONDS (1 s by default); what
        is still waiting when the handler returns is written with its outcome.
        """
        _check_percent(percent)
        self._set_progress(percent, message)
        # Give the heartbeat a chance to write before the handler's next step.
        await asyncio.sleep(0)

    def report(self, percent: float, message: str | None = None) -> None:
        """`progress` for blocking handlers, which run in a thread: safe to call from there."""
        _check_percent(percent)
        self._loop.call_soon_threadsafe(self._set_progress, percent, message)

    def _set_progress(self, percent: float, message: str | None) -> None:
        self._pending_progress = (int(percent), message)
        if message is not None:
            self.last_message = message
        self._progress_reported.set()
        if self.on_progress is not None:
            self.on_progress()

    def take_progress(self) -> tuple[int, str | None] | None:
        pending, self._pending_progress = self._pending_progress, None
        self._progress_reported.clear()
        return pending

    async def wait_for_progress(self, seconds: float) -> None:
        # asyncio.timeout, not wait_for: on 3.11 wait_for can swallow a cancellation that
        # arrives as the event is set, and the heartbeat must stop when it is told to.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._progress_reported.wait()


def _check_percent(percent: float) -> None:
    if not 0 <= percent <= 100:
        raise ValueError(f"progress must be between 0 and 100, got {percent}")
