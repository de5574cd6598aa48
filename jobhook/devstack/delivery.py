"""The dev stack's stand-in for pg_net's background worker (supabase/pg_net src/worker.c).

pg_net queues each request in `net.http_request_queue` and wakes its worker at commit; the worker
takes the queue in batches (`DELETE ... RETURNING`, oldest first, pg_net.batch_size = 200), sends
them concurrently, each under its own timeout, and records one `net._http_response` row per
request. It never retries, and it expires responses older than pg_net.ttl (6 hours). This worker
does the same from outside the server: the stand-in `net.wake()` is a NOTIFY, which PostgreSQL
delivers after commit and never for a rolled-back transaction, so nothing this worker does can
block or fail the inserting transaction. (NOTIFY itself takes a brief database-wide lock at
commit, which pg_net's latch does not; a dev-stack difference only.) Like pg_net, it also looks
at the queue once a second, so requests queued while it was down go out as soon as it is back.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import aiohttp
import psycopg
import structlog
from psycopg.types.json import Jsonb

WAKE_CHANNEL = "pg_net_wake"
# net.check_worker_is_up() looks for this application_name in pg_stat_activity.
APPLICATION_NAME = "pg_net worker"
USER_AGENT = "pg_net/0.20.4"

log = structlog.get_logger("jobhook.devstack.delivery")

CONSUME = """
with rows as (
  select id from net.http_request_queue order by id limit %(batch_size)s
)
delete from net.http_request_queue q
 using rows
 where q.id = rows.id
returning q.id, q.method, q.url, q.timeout_milliseconds, q.headers, q.body
"""

EXPIRE = """
with rows as (
  select ctid from net._http_response
   where created < now() - %(ttl)s
   order by created
   limit %(batch_size)s
)
delete from net._http_response r using rows where r.ctid = rows.ctid
"""

# One statement for a whole batch of responses: arrays in, one row per element out.
RECORD = """
insert into net._http_response
  (id, status_code, content, headers, content_type, timed_out, error_msg)
select * from unnest(
  %s::bigint[], %s::integer[], %s::text[], %s::jsonb[], %s::text[], %s::boolean[], %s::text[]
)
"""


@dataclass(frozen=True)
class Request:
    id: int
    method: str
    url: str
    timeout_milliseconds: int
    headers: dict[str, str]
    body: bytes | None


@dataclass(frozen=True)
class Response:
    id: int
    status_code: int | None = None
    content: str | None = None
    headers: dict[str, str] | None = None
    content_type: str | None = None
    timed_out: bool = False
    error_msg: str | None = None


class DeliveryWorker:
    def __init__(
        self,
        database_url: str,
        *,
        batch_size: int = 200,
        ttl: timedelta = timedelta(hours=6),
        idle_poll_seconds: float = 1.0,
        max_in_flight: int = 64,
        record_interval: float = 0.05,
    ) -> None:
        self.database_url = database_url
        self.batch_size = batch_size
        self.ttl = ttl
        self.idle_poll_seconds = idle_poll_seconds
        self.max_in_flight = max_in_flight
        # Responses are written at least this far apart, so a steady stream of single requests
        # shares insert statements instead of costing a transaction each. They are a record
        # for the operator and lie on no job's path.
        self.record_interval = record_interval
        # pg_net's curl multi handle takes any number of transfers at once; an HTTP client pool
        # degrades with thousands queued, so at most this many are taken from the queue at once.
        self._slot_freed = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._responses: asyncio.Queue[Response] = asyncio.Queue()
        self.ready = asyncio.Event()

    async def run(self) -> None:
        """Deliver until cancelled; reconnect (with backoff) when the database goes away."""
        delay = 0.1
        connector = aiohttp.TCPConnector(limit=self.max_in_flight)
        async with aiohttp.ClientSession(
            headers={"User-Agent": USER_AGENT}, connector=connector
        ) as client:
            while True:
                try:
                    await self._serve(client)
                except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                    self.ready.clear()
                    log.warning("database unreachable, retrying", error=str(exc), delay=delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 2.0)
                else:
                    delay = 0.1

    async def _serve(self, client: aiohttp.ClientSession) -> None:
        async with (
            await self._connect() as listener,
            await self._connect() as queue_conn,
            await self._connect() as response_conn,
        ):
            await listener.execute(f"listen {WAKE_CHANNEL}")
            writer = asyncio.create_task(self._write_responses(response_conn))
            self.ready.set()
            try:
                expired_at = 0.0
                while True:
                    # Take from the queue only what can be sent now, so each request's timeout
                    # starts when it is taken, as with pg_net, and a backlog waits in the table.
                    free = self.max_in_flight - len(self._in_flight)
                    if free == 0:
                        await self._slot_freed.wait()
                        self._slot_freed.clear()
                        continue
                    requests = await self._consume(queue_conn, min(free, self.batch_size))
                    for request in requests:
                        task = asyncio.create_task(self._send(client, request))
                        self._in_flight.add(task)
                        task.add_done_callback(self._in_flight.discard)
                    if len(requests) == min(free, self.batch_size):
                        continue
                    # pg_net expires before it consumes; here expiry waits for a quiet moment, at
                    # most once a second, so it never stands between a commit and its request.
                    if time.monotonic() - expired_at >= self.idle_poll_seconds:
                        await self._expire(queue_conn)
                        expired_at = time.monotonic()
                    # Wait for the next commit that queued something, or look again in a second.
                    async for _ in listener.notifies(timeout=self.idle_poll_seconds, stop_after=1):
                        pass
            finally:
                writer.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await writer

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        return await psycopg.AsyncConnection.connect(
            self.database_url, autocommit=True, application_name=APPLICATION_NAME
        )

    async def _consume(self, conn: psycopg.AsyncConnection[Any], limit: int) -> list[Request]:
        cursor = await conn.execute(CONSUME, {"batch_size": limit})
        return [
            Request(
                id=row[0],
                method=row[1],
                url=row[2],
                timeout_milliseconds=row[3],
                headers={str(k): str(v) for k, v in (row[4] or {}).items()},
                body=row[5],
            )
            for row in await cursor.fetchall()
        ]

    async def _expire(self, conn: psycopg.AsyncConnection[Any]) -> None:
        await conn.execute(EXPIRE, {"ttl": self.ttl, "batch_size": self.batch_size})

    async def _send(self, client: aiohttp.ClientSession, request: Request) -> None:
        try:
            await self._send_now(client, request)
        except Exception as exc:
            # Whatever failed (a header value curl would refuse too...), record it as pg_net does.
            self._responses.put_nowait(
                Response(id=request.id, error_msg=f"{type(exc).__name__}: {exc}")
            )
        finally:
            self._slot_freed.set()

    async def _send_now(self, client: aiohttp.ClientSession, request: Request) -> None:
        timeout = aiohttp.ClientTimeout(total=request.timeout_milliseconds / 1000)
        try:
            async with client.request(
                request.method.upper(),
                request.url,
                headers=request.headers,
                data=request.body,
                timeout=timeout,
            ) as reply:
                # PostgreSQL text cannot hold NUL; the rest of a reply is kept as sent.
                content = (await reply.text(errors="replace")).replace("\x00", "")
                response = Response(
                    id=request.id,
                    status_code=reply.status,
                    content=content or None,
                    headers=dict(reply.headers),
                    content_type=reply.headers.get("content-type"),
                )
        except TimeoutError:
            response = Response(
                id=request.id,
                timed_out=True,
                error_msg=f"Timeout of {request.timeout_milliseconds} ms reached",
            )
        except aiohttp.ClientError as exc:
            response = Response(id=request.id, error_msg=_curl_style_error(exc))
        self._responses.put_nowait(response)

    async def _write_responses(self, conn: psycopg.AsyncConnection[Any]) -> None:
        loop = asyncio.get_running_loop()
        last_write = float("-inf")
        while True:
            batch = [await self._responses.get()]
            if (wait := last_write + self.record_interval - loop.time()) > 0:
                try:
                    await asyncio.sleep(wait)
                except asyncio.CancelledError:
                    # Stopped or reconnecting: the queue outlives this task, so does the reply.
                    self._responses.put_nowait(batch[0])
                    raise
            last_write = loop.time()
            while not self._responses.empty():
                batch.append(self._responses.get_nowait())
            try:
                await _insert_responses(conn, batch)
            except psycopg.DataError as exc:
                # A reply the table refuses is dropped, not the worker (pg_net would log it).
                log.warning("responses not recorded", error=str(exc), count=len(batch))


async def _insert_responses(conn: psycopg.AsyncConnection[Any], batch: Sequence[Response]) -> None:
    await conn.execute(
        RECORD,
        (
            [r.id for r in batch],
            [r.status_code for r in batch],
            [r.content for r in batch],
            [Jsonb(r.headers) if r.headers is not None else None for r in batch],
            [r.content_type for r in batch],
            [r.timed_out for r in batch],
            [r.error_msg for r in batch],
        ),
    )


def _curl_style_error(exc: aiohttp.ClientError) -> str:
    if isinstance(exc, aiohttp.ClientConnectorError):
        return f"Couldn't connect to server: {exc}"
    return f"{type(exc).__name__}: {exc}"
