"""The lease keeper of one attempt: extends the lease, writes progress, watches for cancel and
for the handler's timeout.

It starts only when needed, at the first progress report or when a third of the lease has
passed, so the many jobs that finish in milliseconds never pay for a task of their own; one
timer serves both that start and the timeout, so they do not pay for two timers either. When the
owner asks to cancel, the attempt turns out to be someone else's now, or the handler runs past
its timeout, it cancels the attempt's task; the runner then tells these apart by
`cancel_requested`, `lost` and `timed_out`.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobhook.context import JobContext
    from jobhook.store import Store

# Progress is written at most this often (JOBHOOK_PROGRESS_INTERVAL_SECONDS); reports in between
# are coalesced to the latest.
PROGRESS_INTERVAL_SECONDS = 1.0


class Heartbeat:
    def __init__(
        self,
        store: Store,
        ctx: JobContext,
        attempt_task: asyncio.Task[Any],
        timeout_seconds: float,
        progress_interval: float = PROGRESS_INTERVAL_SECONDS,
    ) -> None:
        self.store = store
        self.ctx = ctx
        self.attempt_task = attempt_task
        self.lost = False
        self.timed_out = False
        # How many times this heartbeat cancelled the attempt (the runner undoes exactly those),
        # and whether it still may: not once the handler has returned.
        self.cancels_issued = 0
        self._armed = True
        lease = ctx.job.lease_expires_at - datetime.now(UTC)
        self.interval = max(1.0, lease.total_seconds() / 3)
        # Never later than the lease needs: a write that carries progress extends it too.
        self.progress_interval = min(progress_interval, self.interval)
        # The claim has just written the row; the first progress write waits its turn from there.
        self._written_at = time.monotonic()
        self._task: asyncio.Task[None] | None = None
        self._stopped = False
        self._loop = asyncio.get_running_loop()
        now = self._loop.time()
        self._beat_at = now + self.interval
        self._deadline = now + timeout_seconds
        if self._beat_at < self._deadline:
            self._timer = self._loop.call_at(self._beat_at, self._beat_is_due)
        else:
            self._timer = self._loop.call_at(self._deadline, self._time_is_up)
        ctx.on_progress = self.start

    def disarm(self) -> None:
        self._armed = False

    def _stop_the_attempt(self) -> None:
        if self._armed:
            self.cancels_issued += 1
            self.attempt_task.cancel()

    def _beat_is_due(self) -> None:
        self.start()
        self._timer = self._loop.call_at(self._deadline, self._time_is_up)

    def _time_is_up(self) -> None:
        if self._armed:
            self.timed_out = True
            self._stop_the_attempt()
        if self._task is None:
            # A handler may take its time to stop, or not stop at all: its lease must still be
            # kept, so the beat starts when it would have.
            self._timer = self._loop.call_at(self._beat_at, self.start)

    def start(self) -> None:
        if self._task is None and not self._stopped:
            self._task = asyncio.create_task(self._beat())

    async def stop(self) -> None:
        self._stopped = True
        self._armed = False
        self._timer.cancel()
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task])
        if self._task is not None and not self._task.cancelled() and self._task.exception():
            self.ctx.log.error("heartbeat stopped on an error", error=str(self._task.exception()))

    async def _beat(self) -> None:
        ctx = self.ctx
        while not self._stopped:
            due_in = self.interval - (time.monotonic() - self._written_at)
            if due_in > 0:
                await ctx.wait_for_progress(due_in)
                # Progress waits for its turn, taking the latest report when it comes. A handler
                # that returns meanwhile stops this wait, and its outcome carries the progress
                # (a completion sets 100 and the last message): one row update, one Realtime
                # message per subscriber, instead of two a few milliseconds apart.
                pace = self.progress_interval - (time.monotonic() - self._written_at)
                if pace > 0:
                    await asyncio.sleep(pace)
            progress = ctx.take_progress()
            if progress is None and time.monotonic() - self._written_at < self.interval:
                continue
            percent, message = progress if progress is not None else (None, None)
            if message is not None:
                message = message.replace("\x00", "")  # PostgreSQL text cannot hold NUL
            try:
                beat = await self.store.heartbeat(ctx.job, percent, message)
            except Exception as exc:
                # Whatever went wrong, keep beating: a heartbeat that stops loses the lease
                # while the handler still runs.
                ctx.log.warning("heartbeat failed; retrying", error=str(exc))
                await asyncio.sleep(min(1.0, self.interval))
                continue
            self._written_at = time.monotonic()
            if beat is None:
                ctx.log.warning("lease lost: another attempt owns the job now; stopping")
                self.lost = True
                self._stop_the_attempt()
                return
            if beat.cancel_requested and not ctx.cancelled:
                ctx.log.info("cancel requested by the owner; stopping the handler")
                ctx.cancel_requested.set()
                self._stop_the_attempt()
