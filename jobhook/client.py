"""What a Supabase client can do with its jobs, run as that client so RLS decides.

Each operation runs in one transaction that first switches to the caller's role and claims,
exactly as PostgREST does for a supabase-js request: `set_config('role', ...)` and
`set_config('request.jwt.claims', ...)`, both local to the transaction. Nothing here checks
ownership in Python; a row the policies hide simply is not there.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

import psycopg
from psycopg.types.json import Jsonb, JsonbLoader
from psycopg_pool import AsyncConnectionPool

from jobhook.jobs import ClientError, JobStatus
from jobhook.store import Limits, queries

Row = dict[str, Any]


class JobNotFound(ClientError):
    """No job with this id is visible to the caller (it does not exist, or is not theirs)."""

    status = 404
    code = "not_found"


class CannotCancel(ClientError):
    """The job exists but is finished or already being cancelled; the message says which."""

    status = 409
    code = "cannot_cancel"


class EnqueueRefused(ClientError):
    """The database refused the job (unknown type, bad payload, quota); the message says why.

    For parameters that are not the type's, `problems` names each field."""

    status = 422

    def __init__(
        self,
        message: str,
        *,
        code: str,
        hint: str | None = None,
        problems: list[dict[str, str]] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.hint = hint
        self.problems = problems


@dataclass(frozen=True)
class Caller:
    """Who is asking: the JWT claims PostgREST would put in request.jwt.claims."""

    claims: dict[str, Any]

    @classmethod
    def user(cls, user_id: UUID | str, **claims: Any) -> Caller:
        return cls({"sub": str(user_id), "role": "authenticated", **claims})

    @property
    def role(self) -> str:
        role = self.claims.get("role", "anon")
        # Only the API roles may be assumed through a token; anything else acts as anon.
        return role if role in ("anon", "authenticated") else "anon"


@dataclass(frozen=True)
class Page:
    jobs: list[Row]
    total: int


class ReadableJsonbLoader(JsonbLoader):
    """jsonb as Python reads it, or, for a value PostgreSQL stores but Python cannot load (a
    row from before the enqueue checks), an object that says so: the client reading the row gets
    it, with the problem named, instead of an error for the whole page."""

    def load(self, data: Any) -> Any:
        try:
            return super().load(data)
        except RecursionError:
            return {"unreadable": "this value is nested too deeply to read"}
        except ValueError:
            return {"unreadable": "this value holds an integer of more than 4300 digits"}


class JobsClient:
    def __init__(self, pool: AsyncConnectionPool[Any], limits: Limits | None = None) -> None:
        self.pool = pool
        limits = limits or Limits()
        self._limits = {
            "statement_timeout": str(limits.statement_timeout_ms),
            "lock_timeout": str(limits.lock_timeout_ms),
        }

    async def _run(self, caller: Caller, name: str, params: dict[str, Any]) -> list[Row]:
        async with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cursor:
            await cursor.execute(
                queries()["act_as"],
                {"role": caller.role, "claims": json.dumps(caller.claims)} | self._limits,
            )
            # On this cursor only: the pool's other users keep the driver's loader.
            cursor.adapters.register_loader("jsonb", ReadableJsonbLoader)
            await cursor.execute(queries()[name], params)
            rows: list[Row] = await cursor.fetchall()
            return rows

    async def enqueue(
        self,
        caller: Caller,
        job_type: str,
        payload: Any,
        *,
        run_at: datetime | None = None,
        idempotency_key: str | None = None,
    ) -> tuple[Row, bool]:
        """Insert one job; return it and whether it is new (False: the key existed)."""
        params = {
            "job_type": job_type,
            "payload": Jsonb(payload),
            "run_at": run_at,
            "idempotency_key": idempotency_key,
        }
        try:
            rows = await self._run(caller, "client_insert", params)
            if rows:
                return rows[0], True
            existing = await self._run(caller, "client_by_idempotency_key", params)
        except psycopg.Error as exc:
            raise _refusal(exc) from exc
        if not existing:
            raise EnqueueRefused(
                "the idempotency key is taken by a job that is no longer visible",
                code="idempotency_conflict",
            )
        return existing[0], False

    async def enqueue_many(self, caller: Caller, job_type: str, payloads: list[Any]) -> list[Row]:
        """Insert many jobs in one statement: one webhook per 500 of them."""
        try:
            return await self._run(
                caller,
                "client_insert_many",
                {"job_type": job_type, "payloads": [Jsonb(p) for p in payloads]},
            )
        except psycopg.Error as exc:
            raise _refusal(exc) from exc

    async def get(self, caller: Caller, job_id: UUID) -> Row:
        rows = await self._run(caller, "client_get", {"id": job_id})
        if not rows:
            raise JobNotFound(f"no job {job_id}")
        return rows[0]

    async def list(
        self,
        caller: Caller,
        *,
        status: JobStatus | None = None,
        job_type: str | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> Page:
        rows = await self._run(
            caller,
            "client_list",
            {"status": status, "job_type": job_type, "limit": limit, "offset": offset},
        )
        # Always at least one row, carrying the count; a page past the end is that row alone,
        # with no job in it.
        total = int(rows[0]["total"])
        jobs = [row for row in rows if row["id"] is not None]
        for row in jobs:
            del row["total"]
        return Page(jobs, total)

    async def cancel(self, caller: Caller, job_id: UUID) -> Row:
        try:
            rows = await self._run(caller, "client_cancel", {"id": job_id})
        except psycopg.errors.InvalidParameterValue as exc:
            raise CannotCancel(exc.diag.message_primary or str(exc)) from exc
        if rows:
            return rows[0]
        job = await self.get(caller, job_id)  # raises JobNotFound when it is not the caller's
        raise CannotCancel(
            f"job {job_id} is {job['status']}; only pending or processing jobs can be cancelled"
        )


def _refusal(exc: psycopg.Error) -> Exception:
    diag = exc.diag
    message = diag.message_primary or str(exc)
    if exc.sqlstate == "PT429":
        return EnqueueRefused(message, code="too_many_unfinished_jobs", hint=diag.message_hint)
    if exc.sqlstate == "22023" and message.startswith("invalid parameters for job type "):
        # The enqueue trigger puts the problems, one per field, in the error's detail.
        return EnqueueRefused(
            message,
            code="invalid_parameters",
            hint=diag.message_hint,
            problems=json.loads(diag.message_detail or "[]"),
        )
    if exc.sqlstate == "22023":
        return EnqueueRefused(message, code="invalid_job", hint=diag.message_hint)
    if exc.sqlstate == "23503":
        # public.jobs.user_id references auth.users: the caller's user does not exist (deleted,
        # or a service named a user that never signed up).
        return EnqueueRefused("the job's user does not exist in auth.users", code="unknown_user")
    if exc.sqlstate in ("23514", "22P02", "22P05", "22021", "22007", "22008"):
        return EnqueueRefused(message, code="invalid_job", hint=diag.message_hint)
    return exc
