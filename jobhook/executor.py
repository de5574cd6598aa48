"""Where a dispatched job runs: bounded tasks in this process, or a Modal function per tier.

The webhook hands jobs to an executor and answers at once, so `submit` never waits for a job to
run. A full local executor refuses instead of queueing in memory: the job stays pending in the
database, where nothing is lost, and the executor takes it back itself once it has room (the
sweep rings for it again should this process die first).
"""

from __future__ import annotations

import asyncio
import contextlib
from collections import Counter
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol
from uuid import UUID

import structlog

from jobhook import logs, metrics
from jobhook.doorbell import DispatchedJob
from jobhook.linger import Linger
from jobhook.registry import Registry
from jobhook.runner import Runner
from jobhook.store import ClaimedJob, is_transient

log = structlog.get_logger("jobhook.executor")
# How long a shutdown waits for a claim in flight to come back.
CLAIM_WAIT_SECONDS = 10.0


class Executor(Protocol):
    async def submit(self, jobs: Sequence[DispatchedJob]) -> list[DispatchedJob]:
        """Start the jobs; return those refused (left pending for the sweep)."""
        ...

    async def aclose(self, grace_seconds: float = 0) -> None:
        """Stop taking work; let running attempts finish within `grace_seconds`, then hand
        back the rest (jobhook.release)."""
        ...


class LocalExecutor:
    """Runs jobs as asyncio tasks in this process, bounded overall and per job type.

    DispatchedJob ids wait in a bounded in-memory line and one claimer takes them from it in
    batches, as many as there is room to run, with one `jobhook.claim` per batch: however many
    doorbells ring at once, the database sees a handful of claims, not one per delivery. The line
    only holds ids of rows that stay pending in the database until claimed, so losing it (a
    crash) loses nothing: the sweep rings for those jobs again.

    When the line is full, doorbells are turned away and the executor owes itself that work:
    once the line is empty and there is room, it claims due jobs of the types it turned away
    straight from the table (`jobhook.claim_due`, oldest first, the types taking turns) until
    none are left, so a burst larger than the line runs at full speed instead of waiting for
    the sweep.
    """

    def __init__(
        self,
        runner: Runner,
        *,
        max_concurrency: int,
        max_per_type: int,
        max_waiting: int = 10_000,
        claim_batch: int = 500,
        linger: Linger | None = None,
    ) -> None:
        self.runner = runner
        self.linger = linger
        self.max_concurrency = max_concurrency
        self.max_per_type = max_per_type
        self.max_waiting = max_waiting
        self.claim_batch = claim_batch
        self._running: Counter[str] = Counter()
        self._waiting: dict[UUID, DispatchedJob] = {}
        # The log context of the delivery that rang for each waiting job (its request and
        # delivery ids), which that job's lines carry once it runs.
        self._delivered_by: dict[UUID, dict[str, Any]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._wake = asyncio.Event()
        self._claimer: asyncio.Task[None] | None = None
        # Job types whose doorbells were turned away (their due jobs wait in the table), in the
        # order they are next served, and how many were turned away per type.
        self._owed: dict[str, None] = {}
        self._refusals: Counter[str] = Counter()
        # Attempts ended per type: one that ends while a claim for its type is out may have
        # freed a user's cap after that claim looked (see _claim_owed).
        self._ended: Counter[str] = Counter()
        # Attempts started so far: a round of claims that started any keeps the runner watching.
        self._started = 0
        # Inserts a look counted that the claims after it may not have found yet.
        self._unseen = 0
        self._closing = False

    @property
    def running(self) -> int:
        return sum(self._running.values())

    async def submit(self, jobs: Sequence[DispatchedJob]) -> list[DispatchedJob]:
        if self._closing:
            return list(jobs)  # they stay pending: a live runner takes them
        refused = []
        delivery = structlog.contextvars.get_contextvars()
        for job in jobs:
            if job.id in self._waiting:
                continue
            if len(self._waiting) >= self.max_waiting:
                refused.append(job)
                metrics.jobs_deferred.labels(job.job_type).inc()
                self._owed.setdefault(job.job_type)
                self._refusals[job.job_type] += 1
                continue
            self._waiting[job.id] = job
            if delivery:
                self._delivered_by[job.id] = delivery
        if self._claimer is None or self._claimer.done():
            # Not the context of the request that happens to start it: see logs.detached_task.
            self._claimer = logs.detached_task(self._claim_forever())
        self._wake.set()
        return refused

    async def _claim_forever(self) -> None:
        # Stopped by aclose between claims, never in one: a claim that has committed must start
        # its jobs (and so release them), or they would sit in processing until their leases
        # expired, each losing an attempt.
        while not self._closing:
            if not await self._woken():
                continue
            started = self._started
            while not self._closing:
                batch = self._next_batch()
                try:
                    if batch:
                        ids = [job.id for job in batch]
                        claimed = await self.runner.store.claim(ids, self.runner.worker_id)
                        for job in claimed:
                            self._start(job)
                        for waiting in batch:
                            self._delivered_by.pop(waiting.id, None)
                        self._owe_capped(batch, claimed)
                        if self.runner.store.doorbells_shared():
                            # The ring may have announced other inserts' jobs too: drain.
                            self._owe_all()
                    elif not (self._owed and await self._claim_owed()):
                        break  # nothing waits, or what is owed has no room: wait for a wake
                except Exception as exc:
                    if batch and is_transient(exc):
                        # The connection went away (a restart, a failover): the ids go back in
                        # the line and are claimed again. Should the lost claim have committed,
                        # claiming again changes nothing; the lease rescues those jobs.
                        for waiting in batch:
                            self._waiting.setdefault(waiting.id, waiting)
                        log.warning("claim failed, trying again", error=str(exc))
                    else:
                        # The ids stay pending in the database; the sweep rings for them again.
                        log.exception("claim failed; the sweep will ring for these jobs again")
                    await asyncio.sleep(0.5)
            started = self._started - started
            # Fewer started than inserts counted (each statement one or more jobs): look again.
            self._unseen = self._unseen if self._unseen > started else 0
            if (
                self.linger is not None
                and started
                and not self._closing
                and self.linger.worth_watching()
            ):
                await self._watch()

    async def _woken(self) -> bool:
        """Wait for a doorbell or a finished attempt; while lingering, look for inserts that
        counted themselves instead (jobhook.linger) every poll interval meanwhile. Whether
        there is claiming to do."""
        linger = self.linger
        if linger is None or not linger.watching:
            await self._wake.wait()
        else:
            try:
                async with asyncio.timeout(linger.poll_seconds):
                    await self._wake.wait()
            except TimeoutError:
                if linger.over():
                    # First: the count moves with every insert that shares a doorbell, of any
                    # type, and looking on while nothing starts would never end.
                    await self._lingering(linger.stop)
                    # Once more, for an insert that counted itself and committed after the
                    # last look. (One that commits later still is drained by the next ring:
                    # the claims' count of shared doorbells has not seen it.)
                    self._owe_all()
                elif self._unseen:
                    # An insert counts itself before it commits: what the claims after a look
                    # did not find may be visible now. Looked for once more, then left to the
                    # next count (or to dispatch_due).
                    self._unseen = 0
                    self._owe_all()
                elif counted := await self._lingering(linger.look):
                    self._owe_all()
                    self._unseen = counted
                else:
                    return False
        self._wake.clear()
        return True

    async def _lingering(self, step: Callable[[], Awaitable[Any]]) -> Any:
        """One step of the linger; should the database fail it, stop watching (the listed
        types lapse within the linger, and their inserts ring again)."""
        assert self.linger is not None
        try:
            return await step()
        except Exception as exc:
            self.linger.forget()
            log.warning("stopped watching for shared doorbells", error=str(exc))
            return None

    async def _watch(self) -> None:
        """Watch for the types this executor can start now: none capped per user (their users'
        jobs wait for their own to end) and none at its limit. Inserts of the others ring, and
        so reach whichever app has room."""
        if self.running >= self.max_concurrency:
            return
        types = [
            job_type.name
            for job_type in self.runner.registry
            if job_type.max_running_per_user is None
            and self._running[job_type.name] < self.max_per_type
        ]
        linger = self.linger
        if linger is not None and types:
            await self._lingering(lambda: linger.extend(types))

    def _owe_all(self) -> None:
        for job_type in self.runner.registry:
            self._owed.setdefault(job_type.name)

    def _owe_capped(self, batch: list[DispatchedJob], claimed: list[ClaimedJob]) -> None:
        """A type that caps its running jobs per user leaves a user's jobs pending past the
        cap: the executor owes itself those, and takes them from the table (fairly, with
        jobhook.claim_due) once jobs of that type finish."""
        started = {job.id for job in claimed}
        for job in batch:
            if job.id not in started and self._capped(job.job_type):
                self._owed.setdefault(job.job_type)

    def _capped(self, job_type: str) -> bool:
        declared = self.runner.registry.get(job_type)
        return declared is not None and declared.max_running_per_user is not None

    async def _claim_owed(self) -> int:
        """Start due jobs of the owed types from the table, each within its type's room and
        all within the overall room; a type is paid up when fewer are due than it had room
        for. Types take turns, so one type's backlog cannot keep the others waiting."""
        started = 0
        for job_type in list(self._owed):
            room = min(
                self.max_concurrency - self.running,
                self.claim_batch - started,
                self.max_per_type - self._running[job_type],
            )
            if room <= 0:
                continue
            refusals = self._refusals[job_type]
            ended = self._ended[job_type]
            jobs = await self.runner.store.claim_due([job_type], room, self.runner.worker_id)
            for job in jobs:
                self._start(job)
            started += len(jobs)
            del self._owed[job_type]
            if (
                len(jobs) == room
                or self._refusals[job_type] != refusals
                # Users at their cap wait for their running jobs: look again when one ends,
                # and when one ended while this claim was out (its wake came before this).
                or (
                    self._capped(job_type)
                    and (self._running[job_type] > 0 or self._ended[job_type] != ended)
                )
            ):
                self._owed[job_type] = None  # maybe more: back of the turn order
        return started

    def _next_batch(self) -> list[DispatchedJob]:
        """Take from the line what there is room to run, oldest first, within type limits."""
        room = min(self.max_concurrency - self.running, self.claim_batch)
        batch: list[DispatchedJob] = []
        taken: Counter[str] = Counter()
        for job in list(self._waiting.values()):
            if len(batch) >= room:
                break
            if self._running[job.job_type] + taken[job.job_type] >= self.max_per_type:
                continue
            taken[job.job_type] += 1
            batch.append(self._waiting.pop(job.id))
        return batch

    def _start(self, job: ClaimedJob) -> None:
        self._started += 1
        self._running[job.job_type] += 1
        task = logs.detached_task(
            self.runner.execute(job),
            **self._delivered_by.get(job.id, {}),
            job_id=str(job.id),
            job_type=job.job_type,
            attempt=job.attempt,
        )
        self._tasks.add(task)
        task.add_done_callback(lambda done: self._finished(done, job.job_type))

    def _finished(self, task: asyncio.Task[Any], job_type: str) -> None:
        self._tasks.discard(task)
        self._running[job_type] -= 1
        self._ended[job_type] += 1
        if self._waiting or self._owed:
            self._wake.set()

    async def aclose(self, grace_seconds: float = 0) -> None:
        """Stop claiming, give the running attempts `grace_seconds` to finish, then release
        the rest: back to pending at once, their attempts not spent, rung for by the next live
        app within a second rather than waiting out their leases."""
        self._closing = True
        self._delivered_by.clear()
        self._waiting.clear()  # still pending in the database; whoever runs next claims them
        if self._claimer is not None:
            self._wake.set()
            _, claiming = await asyncio.wait([self._claimer], timeout=CLAIM_WAIT_SECONDS)
            for claimer in claiming:  # a claim hung on a dead connection: its lease will tell
                claimer.cancel()
        if self.linger is not None and self.linger.watching:
            # The next app's doorbells must ring now, not once this one's linger lapses (and
            # they do by themselves within it, should the database not answer).
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(CLAIM_WAIT_SECONDS):
                    await self._lingering(self.linger.stop)
        if self._tasks and grace_seconds > 0:
            await asyncio.wait(set(self._tasks), timeout=grace_seconds)
        if self._tasks:
            log.info("releasing unfinished attempts", attempts=len(self._tasks))
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(
            *self._tasks, *(t for t in [self._claimer] if t), return_exceptions=True
        )
        await self.runner.completions.aclose()


class ModalExecutor:
    """Spawns one drain per doorbell and tier: the Modal runner function of the tier, given the
    ids the doorbell named, claims those that fit its slots and then what else of its tier is
    due (jobhook.worker.run_jobs). The web function never claims: a claim starts a lease, and a
    failed or slow spawn would leave it running with no runner."""

    def __init__(self, functions: Mapping[str, Any], registry: Registry):
        self.functions = functions
        self.registry = registry

    async def submit(self, jobs: Sequence[DispatchedJob]) -> list[DispatchedJob]:
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
        jobs_by_id = {str(job.id): job for job in jobs}
        for tier, ids in by_tier.items():
            try:
                await self.functions[tier].spawn.aio(ids)
            except Exception:
                # Modal refused the spawn: the jobs stay pending, and dispatch_due rings for
                # them again within a second or two.
                log.exception("spawn failed; jobs left pending", tier=tier, jobs=len(ids))
                refused.extend(jobs_by_id[job_id] for job_id in ids)
        return refused

    async def aclose(self, grace_seconds: float = 0) -> None:
        return None  # the runner functions release their own attempts (modal_app.py)
