"""One attempt of one job: claim, run the handler under its timeout, write the outcome back.

The claim is the only way in: a job the runner cannot claim (already running, not due, cancelled,
finished) is left alone, so a doorbell delivered twice runs the job once. After the claim every
write names (id, attempt); when the database answers that the attempt is no longer ours (the
lease expired and the sweep handed the job to another runner), the runner stops the handler and
writes nothing more.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import secrets
import socket
import time
from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Any, TypeVar
from uuid import UUID

import psycopg
import structlog
from pydantic_core import PydanticSerializationError, to_jsonable_python

from jobhook import metrics
from jobhook.context import JobCancelled, JobContext
from jobhook.heartbeat import Heartbeat
from jobhook.jobs import FailureKind, JobError, JobStatus
from jobhook.linger import Linger
from jobhook.registry import InvalidParameters, JobType, Registry
from jobhook.store import ClaimedJob, Store, is_transient
from jobhook.writeback import Completions

log = structlog.get_logger("jobhook.runner")
_stdlib_log = logging.getLogger("jobhook.runner")
T = TypeVar("T")

# How long write-backs retry when the database is unreachable; past it the lease expires and
# the sweep takes over.
WRITE_RETRY_SECONDS = 30.0


RELEASE_REASON = "the runner shut down before the attempt finished"
# What the job's owner reads when the handler raised anything but a JobError.
UNEXPECTED = "the handler failed unexpectedly; the details are in the runner's logs"
# The defaults of JOBHOOK_MAX_RESULT_BYTES and JOBHOOK_PROGRESS_INTERVAL_SECONDS (jobhook.config).
MAX_RESULT_BYTES = 262_144
PROGRESS_INTERVAL_SECONDS = 1.0


class Outcome(StrEnum):
    NOT_CLAIMED = "not_claimed"
    COMPLETED = "completed"
    RETRY = "retry"
    FAILED = "failed"
    CANCELLED = "cancelled"
    RELEASED = "released"  # handed back unfinished, its attempt not spent (shutdown)
    LOST = "lost"  # the attempt was taken over, or its outcome could not be written


def new_worker_id() -> str:
    """An opaque name for this process's runner. It is written on every row the runner claims,
    which the job's owner can read, so it names no host or process; the log line written here
    tells operators which host and process it is."""
    worker_id = f"runner-{secrets.token_hex(6)}"
    log.info(
        "runner named",
        worker_id=worker_id,
        host=socket.gethostname(),
        pid=os.getpid(),
        modal_task_id=os.environ.get("MODAL_TASK_ID"),
    )
    return worker_id


class Runner:
    def __init__(
        self,
        store: Store,
        registry: Registry,
        worker_id: str,
        on_retry: Callable[[], None] | None = None,
        *,
        progress_interval: float = PROGRESS_INTERVAL_SECONDS,
        max_result_bytes: int = MAX_RESULT_BYTES,
    ) -> None:
        self.store = store
        self.registry = registry
        self.worker_id = worker_id
        self.progress_interval = progress_interval
        self.max_result_bytes = max_result_bytes
        # Told when an attempt goes back to pending, so whoever rings for due jobs looks again.
        self.on_retry = on_retry
        self.completions = Completions(store)

    async def run_many(self, job_ids: list[UUID]) -> list[Outcome]:
        """Claim many jobs in one round trip and run them concurrently."""
        claimed = await self.store.claim(job_ids, self.worker_id)
        return list(await asyncio.gather(*(self.execute(job) for job in claimed)))

    async def drain(
        self,
        job_types: list[str],
        slots: int,
        announced: list[UUID],
        stop: asyncio.Event | None = None,
        linger: Linger | None = None,
    ) -> list[Outcome]:
        """Run what a doorbell announced, and what else is due of `job_types`, never more than
        `slots` at once, until none is left: claim the announced ids that fit, then, when more
        were announced than fit or inserts have shared doorbells since (jobhook.shared_doorbells),
        claim due jobs with jobhook.claim_due (fairly across users) as slots free up, until a
        claim comes back short. `stop` ends the claiming; what runs, runs on. Cancelled, it
        cancels what it runs (each attempt is released).

        With `linger`, a drain whose claims come less than a linger apart watches for its types
        (jobhook.linger) while it runs and for a linger after: their inserts count themselves
        instead of ringing (so they spawn no drain), and it claims when the count moves. It
        watches neither while its slots are full nor for types capped per user, and stops when
        the linger runs out with nothing started, or at `stop`."""
        running: set[asyncio.Task[Outcome]] = set()
        outcomes: list[Outcome] = []
        loop = asyncio.get_running_loop()
        # Whether this drain watches (it holds the linger), and when it looks next.
        watching = False
        next_look = 0.0
        # Inserts a look counted that the claims after it may not have found yet.
        unseen = 0

        def start(jobs: list[ClaimedJob]) -> int:
            running.update(asyncio.ensure_future(self.execute(job)) for job in jobs)
            return len(jobs)

        async def lingering(step: Callable[[Linger], Awaitable[T]]) -> T | None:
            # Should the database fail a step, stop watching: the listed types lapse within
            # the linger, and their inserts ring again.
            nonlocal watching
            assert linger is not None
            try:
                return await step(linger)
            except Exception as exc:
                linger.forget()
                watching = False
                linger.release()
                log.warning("stopped watching for shared doorbells", error=str(exc))
                return None

        # Watched for: the types it can start whenever a slot is free, so none capped per user
        # (those users' jobs wait for their own to end), as the local executor's watch.
        watched = [
            name
            for name in job_types
            if (declared := self.registry.get(name)) is not None
            and declared.max_running_per_user is None
        ]

        async def watch_on(started: int) -> None:
            nonlocal watching, next_look
            if linger is None or not started or not linger.worth_watching():
                return
            if len(running) >= slots or not watched:
                return  # full: inserts ring, and reach a runner with room
            if not watching:
                if not linger.hold():
                    return  # another drain of this process watches
                watching = True
                next_look = loop.time() + linger.poll_seconds
            await lingering(lambda linger: linger.extend(watched))

        async def stop_watching() -> None:
            nonlocal watching
            assert linger is not None
            await lingering(lambda linger: linger.stop())
            watching = False
            linger.release()

        try:
            started = 0
            if announced:
                started = start(await self.store.claim(announced[:slots], self.worker_id))
            await watch_on(started)
            draining = len(announced) > slots or self.store.doorbells_shared()
            while True:
                stopping = stop is not None and stop.is_set()
                room = slots - len(running)
                if draining and room > 0 and not stopping:
                    jobs = await self.store.claim_due(job_types, room, self.worker_id)
                    started = start(jobs)
                    draining = started == room
                    unseen = unseen if unseen > started else 0
                    await watch_on(started)
                if watching and linger is not None and (stopping or linger.over()):
                    await stop_watching()
                    # Once more, for an insert that counted itself and committed after the
                    # last look.
                    draining = not stopping
                    continue
                if not running and not watching:
                    return outcomes
                timeout = max(0.0, next_look - loop.time()) if watching else None
                if running:
                    done, running = await asyncio.wait(
                        running, timeout=timeout, return_when=asyncio.FIRST_COMPLETED
                    )
                    outcomes.extend(task.result() for task in done)
                elif timeout:
                    await asyncio.sleep(timeout)
                if watching and linger is not None and loop.time() >= next_look:
                    next_look = loop.time() + linger.poll_seconds
                    if unseen:
                        # An insert counts itself before it commits: what the claims after a
                        # look did not find may be visible now. Looked for once more.
                        unseen, draining = 0, True
                    elif counted := await lingering(lambda linger: linger.look()):
                        unseen, draining = counted, True
        except asyncio.CancelledError:
            if watching and linger is not None:
                linger.forget()  # its rows lapse within the linger
                linger.release()
            for task in running:
                task.cancel()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        except Exception:
            if watching:
                await stop_watching()
            raise

    async def execute(self, job: ClaimedJob) -> Outcome:
        per_type = metrics.for_job_type(job.job_type)
        per_type.started.inc()
        per_type.latency.observe(job.start_latency.total_seconds())
        ctx = JobContext(job=job)
        outcome = await self._execute(job, ctx)
        metrics.finished(job.job_type, outcome.value).inc()
        # Asked of the standard library's logger, whose level the processors filter by: a line
        # per attempt below the level would cost a trip through structlog's chain for nothing.
        if _stdlib_log.isEnabledFor(logging.INFO):
            ctx.log.info("attempt finished", outcome=outcome.value)
        return outcome

    async def _execute(self, job: ClaimedJob, ctx: JobContext) -> Outcome:
        job_type = self.registry.get(job.job_type)
        if job_type is None:
            return await self._fail(
                job,
                f'no handler for job type "{job.job_type}" in this deployment',
                retryable=False,
                kind=FailureKind.UNKNOWN_JOB_TYPE,
            )
        if job.unreadable is not None:
            return await self._fail(
                job, job.unreadable, retryable=False, kind=FailureKind.INVALID_PAYLOAD
            )
        try:
            params = job_type.parse(job.payload)
        except InvalidParameters as exc:
            return await self._fail(
                job, str(exc), retryable=False, kind=FailureKind.INVALID_PARAMETERS
            )

        attempt = asyncio.current_task()
        assert attempt is not None
        heartbeat = Heartbeat(
            self.store, ctx, attempt, job_type.timeout_seconds, self.progress_interval
        )
        started = time.perf_counter()
        failure: tuple[str, bool, FailureKind] | None = None
        stopped = False  # the handler was stopped for its owner's cancel request, or a lost lease
        released = False  # cancelled from outside: the process is shutting down
        try:
            try:
                result = await self._call(job_type, params, ctx)
            finally:
                # From here on the heartbeat must not cancel this task: what follows are the
                # write-backs. Synchronous, so no cancel can slip in between. Its cancels are
                # taken back, whether the handler raised them or swallowed them.
                heartbeat.disarm()
                for _ in range(heartbeat.cancels_issued):
                    attempt.uncancel()
        except asyncio.CancelledError:
            if attempt.cancelling():
                # Cancelled from outside (the heartbeat's own cancels were taken back above),
                # perhaps as well as by the heartbeat: the process is shutting down (the
                # executor's aclose, or Modal stopping the container with SIGINT, which cancels
                # each running input). The attempt is handed back rather than left to run out
                # its lease; the write still runs, since a task that has caught its
                # cancellation may await.
                attempt.uncancel()
                released = True
            elif heartbeat.cancels_issued == 0:
                # A CancelledError of the handler's own (say, from a task it cancelled and
                # awaited): a failure like any other, not a shutdown to release for.
                ctx.log.warning("handler failed unexpectedly", error="CancelledError")
                failure = (UNEXPECTED, True, FailureKind.ERROR)
            elif heartbeat.timed_out and not heartbeat.lost and not ctx.cancelled:
                failure = (
                    f"timed out after {job_type.timeout_seconds} s",
                    True,
                    FailureKind.TIMEOUT,
                )
            else:
                stopped = True
        except JobCancelled:
            if not ctx.cancelled:
                raise
            stopped = True
        except JobError as exc:
            ctx.log.warning("handler failed", error=str(exc), retryable=exc.retryable)
            failure = (str(exc), exc.retryable, failure_kind(exc))
        except Exception as exc:
            # The job's owner reads `error` and `errors` (and Realtime streams them): what an
            # unexpected exception says (addresses, host names, upstream replies, paths) is for
            # the operator, in the logs with the traceback. A handler's public message is the
            # one it raises as a JobError.
            ctx.log.warning(
                "handler failed unexpectedly", error=f"{type(exc).__name__}: {exc}", exc_info=exc
            )
            failure = (UNEXPECTED, True, FailureKind.ERROR)
        finally:
            await heartbeat.stop()
            metrics.for_job_type(job.job_type).duration.observe(time.perf_counter() - started)

        if heartbeat.lost:
            return Outcome.LOST  # another attempt owns the job: write nothing
        if released:
            status = await self._write(lambda: self.store.release(job, RELEASE_REASON))
            return self._ended(status, pending=Outcome.RELEASED)
        if failure is not None:
            message, retryable, kind = failure
            return await self._fail(job, message, retryable=retryable, kind=kind)
        if stopped:
            status = await self._write(lambda: self.store.acknowledge_cancel(job))
            return Outcome.CANCELLED if status is JobStatus.CANCELLED else Outcome.LOST
        if ctx.cancelled:
            # The handler finished although the owner asked to cancel; its result stands.
            ctx.log.info("completed despite a cancel request")
        payload, problem = storable(result, self.max_result_bytes)
        if problem is not None:
            return await self._fail(job, problem, retryable=False, kind=FailureKind.BAD_RESULT)
        try:
            done = await self._write(
                lambda: self.completions.complete(job, payload, ctx.last_message)
            )
        except psycopg.DataError as exc:
            return await self._fail(
                job,
                f"the handler's result cannot be stored: {exc.diag.message_primary or exc}",
                retryable=False,
                kind=FailureKind.BAD_RESULT,
            )
        return Outcome.COMPLETED if done else Outcome.LOST

    async def _call(self, job_type: JobType, params: Any, ctx: JobContext) -> Any:
        if job_type.is_async:
            return await job_type.handler(params, ctx)
        # A blocking handler runs in a thread; it cannot be interrupted, only waited for.
        return await asyncio.to_thread(job_type.handler, params, ctx)

    async def _fail(
        self, job: ClaimedJob, message: str, *, retryable: bool, kind: FailureKind
    ) -> Outcome:
        status = await self._write(
            lambda: self.store.fail(job, message, retryable=retryable, kind=kind)
        )
        return self._ended(status, pending=Outcome.RETRY)

    def _ended(self, status: JobStatus | None, *, pending: Outcome) -> Outcome:
        """The outcome of an attempt its write-back left in `status` (None: the attempt was no
        longer this runner's); back to pending, whoever rings for due jobs is told."""
        if status is JobStatus.PENDING and self.on_retry is not None:
            self.on_retry()
        return {
            JobStatus.PENDING: pending,
            JobStatus.FAILED: Outcome.FAILED,
            JobStatus.CANCELLED: Outcome.CANCELLED,
        }.get(status, Outcome.LOST)  # type: ignore[arg-type]

    async def _write(self, write: Callable[[], Awaitable[T]]) -> T | None:
        """Run a write-back, retrying while the database is unreachable."""
        deadline = time.monotonic() + WRITE_RETRY_SECONDS
        delay = 0.1
        while True:
            try:
                return await write()
            except psycopg.DataError:
                raise  # the write can never succeed; the caller decides what to record instead
            except Exception as exc:
                if not is_transient(exc) or time.monotonic() > deadline:
                    log.error("write-back failed; the sweep will rescue the job", error=str(exc))
                    return None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)


def failure_kind(exc: JobError) -> FailureKind:
    """The error's kind, or ERROR for a kind of the handler's own that jobhook.failure_kind
    does not know (the database would refuse it, and the failure with it)."""
    try:
        return FailureKind(exc.kind)
    except ValueError:
        return FailureKind.ERROR


def storable(result: Any, max_bytes: int = MAX_RESULT_BYTES) -> tuple[Any, str | None]:
    """The result as JSON PostgreSQL will take, or why it cannot be: checked per job, so one
    bad result cannot fail the batch it would have been written with."""
    if result is None:
        return None, None  # most handlers return nothing
    try:
        payload = to_jsonable_python(result)
        # Measured as the enqueue trigger measures a payload: the UTF-8 bytes of its JSON text,
        # with jsonb's separators (", " and ": ", which are json.dumps' too).
        text = json.dumps(payload, allow_nan=False, ensure_ascii=False)
        size = len(text.encode())
    except (PydanticSerializationError, ValueError, TypeError) as exc:
        return None, f"the handler's result is not JSON: {exc}"
    if "\\u0000" in text:
        return None, "the handler's result holds a NUL character (\\u0000), which cannot be stored"
    if size > max_bytes:
        return None, (
            f"the handler's result is {size} bytes, over the limit of {max_bytes} bytes"
            " (JOBHOOK_MAX_RESULT_BYTES); store large output in Storage and return its path"
        )
    return payload, None
