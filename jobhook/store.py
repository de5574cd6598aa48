"""The runtime's only door to the database: named queries over an async connection pool.

Each method is one round trip that calls one SQL function. Connections are opened with
`prepare_threshold=None` so nothing relies on server-side prepared statements, which Supavisor's
transaction pooler (Supabase's port 6543) does not keep across transactions.
"""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from functools import cache
from importlib import resources
from typing import Any, LiteralString, cast
from uuid import UUID

import psycopg
from psycopg import AsyncClientCursor
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from psycopg_pool import AsyncConnectionPool

from jobhook.jobs import FailureKind, JobStatus

_NAMED = re.compile(r"^-- name: (\w+)\n", re.MULTILINE)


def named_queries(package: str, file: str) -> dict[str, LiteralString]:
    """The queries of a .sql file in `package`, each under its `-- name: <name>` header."""
    text = resources.files(package).joinpath(file).read_text()
    parts = _NAMED.split(text)[1:]
    return {
        name: cast(LiteralString, body.strip())
        for name, body in zip(parts[::2], parts[1::2], strict=True)
    }


@cache
def queries() -> dict[str, LiteralString]:
    """Every named query of every `.sql` file in jobhook/sql (queries.sql, health.sql,
    dashboard.sql), loaded once; a name used twice is an error, not a silent override."""
    named: dict[str, LiteralString] = {}
    files = sorted(
        f.name for f in resources.files("jobhook.sql").iterdir() if f.name.endswith(".sql")
    )
    for file in files:
        for name, body in named_queries("jobhook.sql", file).items():
            if name in named:
                raise ValueError(f"the query name {name!r} is used twice in jobhook/sql")
            named[name] = body
    return named


@cache
def limited_queries() -> dict[str, LiteralString]:
    return {name: limited(body) for name, body in queries().items()}


@dataclass(frozen=True)
class ClaimedJob:
    id: UUID
    user_id: UUID | None
    job_type: str
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    lease_expires_at: datetime
    # From the moment the job was due (its insert, or its run_at) to this claim.
    start_latency: timedelta
    # Why the payload could not be read (the runner fails the job with it), or None.
    unreadable: str | None = None
    # When this process had the claim's answer (time.time()): from there to the handler's
    # start is the runner's own share of a job's wait.
    claimed_at: float = field(default_factory=time.time, compare=False)

    @classmethod
    def of(cls, row: dict[str, Any]) -> ClaimedJob:
        """A claimed row, its payload parsed here rather than by the driver: a payload that
        PostgreSQL stored but Python cannot load (rows from before the enqueue checks, or
        written by a trusted backend) fails its own job instead of the fetch of the batch."""
        text = row.pop("payload")
        try:
            payload = json.loads(text)
        except RecursionError:
            return cls(payload={}, unreadable="the payload is nested too deeply to read", **row)
        except ValueError:
            # From a valid JSON text, CPython's only ValueError: an integer of more digits than
            # sys.get_int_max_str_digits() allows.
            return cls(
                payload={},
                unreadable="the payload holds an integer of more than 4300 digits",
                **row,
            )
        return cls(payload=payload, **row)


@dataclass(frozen=True)
class Readiness:
    url: str | None
    secret: str | None
    foreign_queue_triggers: list[str]


@dataclass(frozen=True)
class LeaseExtended:
    """The database's answer to a heartbeat that still holds the attempt."""

    cancel_requested: bool
    lease_expires_at: datetime


@dataclass(frozen=True)
class Limits:
    """How long one runtime call may run, and wait for a lock, before the database ends it.

    Set per transaction (SET LOCAL): Supavisor's transaction pooler hands each transaction any
    server connection, so a session setting would hold for whoever runs there next, or not at
    all. Without them a lock someone holds (a client locking its own row, an operator's open
    transaction) makes every call that needs it wait, until the pool is empty."""

    statement_timeout_ms: int = 30_000
    lock_timeout_ms: int = 5_000


def limited(body: LiteralString) -> LiteralString:
    """`body` in a transaction of its own under the call's limits, all sent as one message:
    the limits cost no round trip (the parameters are bound client-side, so that one message
    may hold several statements)."""
    return (
        "begin;\n"
        "set local statement_timeout = %(statement_timeout_ms)s;\n"
        "set local lock_timeout = %(lock_timeout_ms)s;\n" + body.rstrip().rstrip(";") + ";\ncommit"
    )


class Store:
    def __init__(self, pool: AsyncConnectionPool[Any], limits: Limits | None = None) -> None:
        self.pool = pool
        self.limits = limits or Limits()
        self._limits = {
            "statement_timeout_ms": self.limits.statement_timeout_ms,
            "lock_timeout_ms": self.limits.lock_timeout_ms,
        }
        # jobhook.shared_doorbells as the newest claim saw it, and as the last drain did.
        self._shared_doorbells = 0
        self._drained_at = 0
        self._looked_at = 0

    @classmethod
    def open(
        cls,
        database_url: str,
        *,
        min_size: int = 2,
        max_size: int = 20,
        limits: Limits | None = None,
    ) -> Store:
        return cls(new_pool(database_url, min_size=min_size, max_size=max_size), limits)

    async def __aenter__(self) -> Store:
        await self.pool.open()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.pool.close()

    async def _all(
        self, name: str, params: dict[str, Any], acquire_within: float | None = None
    ) -> list[dict[str, Any]]:
        async with self.pool.connection(timeout=acquire_within) as conn:
            cursor = AsyncClientCursor(conn, row_factory=dict_row)
            try:
                await cursor.execute(limited_queries()[name], params | self._limits)
            except BaseException:
                # The transaction the message began is left aborted, or half-sent.
                await conn.rollback()
                raise
            rows: list[dict[str, Any]] = []
            while True:  # begin, the two settings, the query, commit: one of them has rows
                if cursor.description is not None:
                    rows = await cursor.fetchall()
                if not cursor.nextset():
                    break
            return rows

    async def _value(
        self, name: str, params: dict[str, Any] | None = None, acquire_within: float | None = None
    ) -> Any:
        rows = await self._all(name, params or {}, acquire_within)
        return next(iter(rows[0].values())) if rows else None

    async def claim(self, ids: list[UUID], worker_id: str) -> list[ClaimedJob]:
        rows = await self._all("claim", {"ids": ids, "worker_id": worker_id})
        for row in rows:
            self._shared_doorbells = max(self._shared_doorbells, row.pop("shared_doorbells"))
        return [ClaimedJob.of(row) for row in rows]

    def doorbells_shared(self) -> bool:
        """Whether inserts have shared a doorbell since the last time this was asked: then a
        ring may have announced more than the ids it named, and what is due must be drained.
        Counted by the database (jobhook.shared_doorbells) and read with each claim."""
        shared = self._shared_doorbells != self._drained_at
        self._drained_at = self._shared_doorbells
        return shared

    async def keep_draining(self, job_types: list[str], linger_ms: int) -> datetime:
        """Watch for inserts of these types sharing doorbells for `linger_ms` more (they stop
        ringing meanwhile); until when the database now counts on this runner."""
        rows = await self._all("keep_draining", {"job_types": job_types, "linger_ms": linger_ms})
        self._shared_doorbells = max(self._shared_doorbells, rows[0]["shared_doorbells"])
        self._looked_at = max(self._looked_at, self._drained_at)
        watching_until: datetime = rows[0]["watching_until"]
        return watching_until

    async def stop_draining(self, job_types: list[str], watched_until: datetime) -> None:
        """Inserts of these types ring again, unless another runner watches for them longer."""
        await self._all("stop_draining", {"job_types": job_types, "watched_until": watched_until})

    async def look_for_shared_doorbells(self) -> int:
        """Read jobhook.shared_doorbells: how many insert statements shared doorbells since the
        last look (or, for the first look of a watch, since the last claim)."""
        shared = await self._value("shared_doorbells")
        self._shared_doorbells = max(self._shared_doorbells, shared)
        # A baseline of its own: a counted insert may commit after every claim that followed
        # this look, and the next ring must then still drain (doorbells_shared).
        moved = self._shared_doorbells - self._looked_at
        self._looked_at = self._shared_doorbells
        return moved

    async def claim_due(
        self, job_types: list[str], max_jobs: int, worker_id: str
    ) -> list[ClaimedJob]:
        """Claim up to `max_jobs` due jobs of these types, oldest first, announced or not."""
        rows = await self._all(
            "claim_due", {"job_types": job_types, "max_jobs": max_jobs, "worker_id": worker_id}
        )
        return [ClaimedJob.of(row) for row in rows]

    async def heartbeat(
        self, job: ClaimedJob, progress: int | None = None, message: str | None = None
    ) -> LeaseExtended | None:
        """Extend the lease; None when the attempt is no longer this runner's."""
        rows = await self._all(
            "heartbeat",
            {"id": job.id, "attempt": job.attempt, "progress": progress, "message": message},
        )
        return LeaseExtended(**rows[0]) if rows else None

    async def complete_many(self, outcomes: Jsonb) -> list[UUID]:
        """Complete many attempts; return the ids completed (see jobhook.writeback)."""
        return [row["id"] for row in await self._all("complete_many", {"outcomes": outcomes})]

    async def fail(
        self, job: ClaimedJob, message: str, *, retryable: bool, kind: FailureKind
    ) -> JobStatus | None:
        status = await self._value(
            "fail",
            {
                "id": job.id,
                "attempt": job.attempt,
                "message": message,
                "retryable": retryable,
                "kind": kind,
            },
        )
        return None if status is None else JobStatus(status)

    async def release(self, job: ClaimedJob, reason: str) -> JobStatus | None:
        """Hand an unfinished attempt back without spending it (see jobhook.release)."""
        status = await self._value(
            "release", {"id": job.id, "attempt": job.attempt, "reason": reason}
        )
        return None if status is None else JobStatus(status)

    async def acknowledge_cancel(self, job: ClaimedJob) -> JobStatus | None:
        status = await self._value("acknowledge_cancel", {"id": job.id, "attempt": job.attempt})
        return None if status is None else JobStatus(status)

    async def dispatch_due(self) -> tuple[int, timedelta | None]:
        """Ring for the jobs that fell due; return how many, and when the next one falls due."""
        [row] = await self._all("dispatch_due", {})
        return int(row["dispatched"]), row["next_due_in"]

    async def renew_job_types(self, names: list[str], serve_seconds: int) -> list[str]:
        """This deployment still serves these types; return the types nobody serves any more,
        now disabled (see jobhook.registry)."""
        rows = await self._all("renew_job_types", {"names": names, "serve_seconds": serve_seconds})
        return [row["name"] for row in rows]

    async def fetch(
        self, name: str, params: dict[str, Any], *, acquire_within: float | None = None
    ) -> list[dict[str, Any]]:
        """The rows of a named query of the operator's (jobhook/sql/health.sql and
        dashboard.sql), run under the same limits as every other call."""
        return await self._all(name, params, acquire_within)

    async def rows(self, name: str) -> list[dict[str, Any]]:
        """The rows of a named query without parameters (the operator's views), run under the
        same limits as every other call."""
        return await self._all(name, {})

    async def readiness(self, *, acquire_within: float | None = None) -> Readiness:
        """The doorbell's configuration, as /ready checks it."""
        [row] = await self._all("readiness", {}, acquire_within)
        return Readiness(**row)

    async def ping(self, *, acquire_within: float | None = None) -> None:
        """Fails within `acquire_within` seconds when no connection can be had (health checks)."""
        await self._value("ping", acquire_within=acquire_within)


def new_pool(
    database_url: str, *, min_size: int = 1, max_size: int = 10
) -> AsyncConnectionPool[Any]:
    """An unopened pool of autocommit connections returning dict rows."""
    pool: AsyncConnectionPool[Any] = AsyncConnectionPool(
        database_url,
        min_size=min_size,
        max_size=max_size,
        kwargs={
            "autocommit": True,
            "prepare_threshold": None,
            "row_factory": dict_row,
            # A connection a NAT or pooler dropped in silence must fail in seconds, not hang
            # until the kernel gives up (minutes): a hung claim stalls the executor, a hung
            # heartbeat loses its lease.
            "keepalives": 1,
            "keepalives_idle": 30,
            "keepalives_interval": 10,
            "keepalives_count": 3,
            "tcp_user_timeout": 30_000,
        },
        open=False,
        name="jobhook",
    )
    return pool


def is_transient(exc: BaseException) -> bool:
    """A failure worth retrying: the connection or the server went away, not a bad statement."""
    return isinstance(exc, psycopg.OperationalError | psycopg.InterfaceError) or (
        isinstance(exc, psycopg.Error)
        and exc.sqlstate is not None
        and exc.sqlstate.startswith(("08", "57P"))
    )
