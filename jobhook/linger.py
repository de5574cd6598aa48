"""A drain that has run dry keeps watching for a moment before it stops.

Under a steady stream of single inserts, each insert would ring a doorbell of its own (a signed
request through pg_net and the app: milliseconds of CPU on every side) only to reach a runner
that has just finished the last job. A lingering runner lists its job types in jobhook.drains
until a moment ahead; inserts of those types then count themselves in jobhook.shared_doorbells
instead of ringing, and the runner, reading that counter every poll interval, claims as soon as
it moves. At a few jobs a second the linger ends between two inserts and each rings as before.

Both kinds of runner watch this way: the local executor (jobhook.executor) and a Modal runner
input (jobhook.runner's drain), one watch per process or container.
"""

from __future__ import annotations

import time
from datetime import datetime

from jobhook.store import Store


class Linger:
    def __init__(self, store: Store, linger_ms: int, poll_ms: int) -> None:
        self.store = store
        self.linger_ms = linger_ms
        self.poll_seconds = poll_ms / 1000
        # When this runner stops watching: by this process's clock, and as the database has it.
        self._until: float | None = None
        self._watched_until: datetime | None = None
        # Every type listed since the watch began: a rewrite may list fewer (one at its limit),
        # and stopping must take back all of them.
        self._job_types: list[str] = []
        # When the last round of claims that started jobs came (time.monotonic()).
        self._last_round = -float("inf")
        # Whether a drain holds this linger (see hold): one watch per container.
        self._held = False

    @property
    def watching(self) -> bool:
        return self._until is not None

    def over(self) -> bool:
        return self._until is not None and time.monotonic() >= self._until

    def hold(self) -> bool:
        """Take this linger for one drain of the process, if no other holds it: a second drain
        watching the same types would only double the looks."""
        if self._held:
            return False
        self._held = True
        return True

    def release(self) -> None:
        self._held = False

    def worth_watching(self) -> bool:
        """Told after each round of claims that started jobs: whether to watch on. Only while
        jobs come faster than a linger apart: at a few a second each rings, and watching would
        cost queries for nothing."""
        now = time.monotonic()
        recent = now - self._last_round < self.linger_ms / 1000
        self._last_round = now
        return recent or self.watching

    async def extend(self, job_types: list[str]) -> None:
        """Watch for these types for another linger from now. Written at most once per half
        linger (or when the types change): the time is one row per type, and the stream that
        keeps a runner watching would otherwise rewrite it with every claim."""
        if (
            self._until is not None
            and self._until - time.monotonic() > self.linger_ms / 2000
            and set(job_types) <= set(self._job_types)
        ):
            return
        self._watched_until = await self.store.keep_draining(job_types, self.linger_ms)
        self._job_types = sorted(set(self._job_types) | set(job_types))
        # Counted from after the database's answer, so this runner watches at least as long as
        # the database counts on it.
        self._until = time.monotonic() + self.linger_ms / 1000

    async def look(self) -> int:
        """How many insert statements have counted themselves since the last look."""
        return await self.store.look_for_shared_doorbells()

    async def stop(self) -> None:
        """Inserts ring again; the caller claims once more after, for an insert that counted
        itself and committed after the last look."""
        if self._watched_until is not None:
            await self.store.stop_draining(self._job_types, self._watched_until)
        self._watched_until = self._until = None
        self._job_types = []

    def forget(self) -> None:
        """Stop watching without telling the database (it is unreachable); the rows lapse."""
        self._watched_until = self._until = None
        self._job_types = []
