"""The dev stack's stand-in for pg_net's background worker (supabase/pg_net v0.20.4 src/worker.c).

pg_net queues each request in `net.http_request_queue` and wakes its worker at commit
(src/worker.c:94-131); the worker sleeps on its latch until woken (src/worker.c:286-293), then
takes the queue in batches (`DELETE ... RETURNING`, oldest first, pg_net.batch_size, default
200), sends them concurrently, each under its own timeout, and records one `net._http_response`
row per request. It never retries, and it expires responses older than pg_net.ttl (6 hours).

This worker does the same from outside the server. The stand-in `net.wake()` is a NOTIFY, which
PostgreSQL delivers after commit and never for a rolled-back transaction, so nothing this worker
does can block or fail the inserting transaction. (NOTIFY takes a brief database-wide lock at
commit, which pg_net's latch does not; a dev-stack difference only.) As upstream, a row put in
the queue without a wake waits for the next wake, and an idle worker runs no query at all.

Two ways to pace the sends:
- the default takes from the queue whatever can be sent now and records responses as they come,
  so a burst goes out as fast as the app can take it;
- `paced=True` is pg_net's own loop (src/worker.c:300-418): one batch at a time, every transfer
  of it finished and its responses recorded before the next batch is taken, and up to a second's
  pause (cut short by a wake) between batches. With `latency`, every request also waits that
  long before it is sent, inside its timeout, as a request from a hosted database pays a round
  trip to a deployed app.

Whatever ends a pass (the database restarting, pg_net dropped and re-created, schema `net`
missing, a response the table refuses) is logged and the worker starts over after a second, as
the postmaster restarts pg_net's worker (src/worker.c:36, 483).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import socket
import time
from collections.abc import Awaitable, Sequence
from dataclasses import dataclass, field
from datetime import timedelta
from functools import cache
from importlib import resources
from types import SimpleNamespace
from typing import Any, LiteralString, cast

import aiohttp
import psycopg
import psycopg.conninfo
import structlog
from aiohttp.abc import ResolveResult
from psycopg import AsyncClientCursor
from psycopg.types.json import Jsonb

WAKE_CHANNEL = "pg_net_wake"  # as delivery.sql's `listen` names it
# The payload net.worker_restart() sends on WAKE_CHANNEL.
RESTART_PAYLOAD = "restart"
# pg_net's worker names itself so in pg_stat_activity (src/worker.c:259); net.check_worker_is_up()
# and net.wait_until_running() look for it.
APPLICATION_NAME = "pg_net 0.20.4"
USER_AGENT = "pg_net/0.20.4"  # src/core.c:60
# The postmaster restarts pg_net's worker a second after it exits (src/worker.c:36, 483).
RESTART_DELAY = 1.0
# curl accepts reply header lines up to CURL_MAX_HTTP_HEADER (100 KiB); aiohttp's default is 8190.
MAX_HEADER_BYTES = 100 * 1024
# curl sends a body given with CURLOPT_POSTFIELDS with this type unless a header names another.
FORM_CONTENT_TYPE = "application/x-www-form-urlencoded"

log = structlog.get_logger("jobhook.devstack.delivery")

_NAMED = re.compile(r"^-- name: (\w+)\n", re.MULTILINE)


@cache
def queries() -> dict[str, LiteralString]:
    text = resources.files(__package__).joinpath("delivery.sql").read_text()
    parts = _NAMED.split(text)[1:]
    return {
        name: cast(LiteralString, body.strip())
        for name, body in zip(parts[::2], parts[1::2], strict=True)
    }


@dataclass(frozen=True)
class Request:
    id: int
    method: str
    url: str
    timeout_milliseconds: int
    headers: list[tuple[str, str]]
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


class _Restart(Exception):
    """net.worker_restart() was called."""


@dataclass
class _Timings:
    """When each step of one request ended, in seconds since it started (curl's CURLINFO_*)."""

    started: float = field(default_factory=time.monotonic)
    namelookup: float = 0.0
    connect: float = 0.0
    pretransfer: float = 0.0

    def mark(self, step: str) -> None:
        setattr(self, step, time.monotonic() - self.started)


class DeliveryWorker:
    def __init__(
        self,
        database_url: str,
        *,
        batch_size: int | None = None,
        ttl: timedelta | None = None,
        paced: bool = False,
        latency: float = 0.0,
        max_in_flight: int = 64,
        record_interval: float = 0.05,
    ) -> None:
        self.database_url = database_url
        # None: read pg_net.batch_size and pg_net.ttl from the server on every pass, as upstream.
        self.batch_size = batch_size
        self.ttl = ttl
        self.paced = paced
        self.latency = latency
        # pg_net's curl multi handle takes any number of transfers at once; an HTTP client pool
        # degrades with thousands queued, so unpaced, at most this many are in flight at once.
        self.max_in_flight = max_in_flight
        # Unpaced, responses are written at least this far apart, so a steady stream of single
        # requests shares insert statements instead of costing a transaction each.
        self.record_interval = record_interval
        self._placed_url: str | None = None
        self.ready = asyncio.Event()
        # How many times a pass ended and the worker started over; set at each.
        self.restarts = 0
        self.restarted = asyncio.Event()
        self._slot_freed = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        # Responses not yet recorded. They outlive a pass: a transfer under way when the pass
        # ended still finishes, and its response is written by the next pass.
        self._unrecorded: list[Response] = []
        self._have_unrecorded = asyncio.Event()
        self._all_recorded = asyncio.Event()
        self._all_recorded.set()

    async def run(self) -> None:
        """Deliver until cancelled, starting over whenever a pass ends."""
        connect_delay = 0.1
        try:
            async with _http_client(self.max_in_flight) as client:
                while True:
                    try:
                        await self._serve(client)
                    except _Restart:
                        log.info("pg_net worker restarting on request")
                        delay = RESTART_DELAY
                    except (psycopg.OperationalError, psycopg.InterfaceError) as exc:
                        log.warning("database unreachable, retrying", error=str(exc))
                        delay, connect_delay = connect_delay, min(connect_delay * 2, 2.0)
                    except Exception as exc:
                        log.error("pg_net worker failed, restarting", error=repr(exc))
                        delay = RESTART_DELAY
                    else:  # pragma: no cover - a pass only ends by an exception
                        delay = RESTART_DELAY
                    self.ready.clear()
                    self.restarts += 1
                    self.restarted.set()
                    await asyncio.sleep(delay)
        finally:
            for task in list(self._in_flight):
                task.cancel()

    async def _place(self) -> None:
        """Follow pg_net.database_name and pg_net.username, read at every start as upstream."""
        # Asked from where the worker was pointed, so that resetting them moves it back.
        self._placed_url = None
        async with await self._connect() as conn:
            cursor = await conn.execute(queries()["placement"])
            row = await cursor.fetchone()
        assert row is not None
        move_database, database_name, username, move_user = row
        if move_database or move_user:
            self._placed_url = psycopg.conninfo.make_conninfo(
                self.database_url, dbname=database_name, user=username
            )

    async def _serve(self, client: aiohttp.ClientSession) -> None:
        await self._place()
        async with (
            await self._connect() as conn,
            await self._connect() as recorder,
            await self._connect() as listener,
        ):
            await listener.execute(queries()["listen"])
            # Upstream starts with a pass over the queue, and so after every restart
            # (should_wake starts at 1: src/worker.c:170, 455).
            woken = asyncio.Event()
            woken.set()
            # The latch: any wake also cuts short the pause between batches.
            latch = asyncio.Event()
            self.ready.set()
            await _first_failure(
                self._listen(listener, woken, latch),
                self._write_responses(recorder),
                self._work(conn, client, woken, latch),
            )

    async def _connect(self) -> psycopg.AsyncConnection[Any]:
        url = self._placed_url or self.database_url
        # No server-side prepared statements: pg_net can be dropped and re-created under a
        # running worker, and a statement prepared against the old tables would then fail with
        # "cached plan must not change result type".
        return await psycopg.AsyncConnection.connect(
            url,
            autocommit=True,
            application_name=APPLICATION_NAME,
            prepare_threshold=None,
        )

    async def _listen(
        self, listener: psycopg.AsyncConnection[Any], woken: asyncio.Event, latch: asyncio.Event
    ) -> None:
        async for notify in listener.notifies():
            if notify.payload == RESTART_PAYLOAD:
                raise _Restart
            woken.set()
            latch.set()

    async def _work(
        self,
        conn: psycopg.AsyncConnection[Any],
        client: aiohttp.ClientSession,
        woken: asyncio.Event,
        latch: asyncio.Event,
    ) -> None:
        while True:
            await woken.wait()  # src/worker.c:288-293
            woken.clear()
            latch.clear()
            while True:
                if self.paced:
                    await self._all_recorded.wait()
                elif len(self._in_flight) >= self.max_in_flight:
                    self._slot_freed.clear()
                    await self._slot_freed.wait()
                    continue
                room = None if self.paced else self.max_in_flight - len(self._in_flight)
                try:
                    expired, requests = await self._pass(conn, room)
                except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName):
                    # src/worker.c:224-231, 307-312: skip the pass, wait for the next wake.
                    log.warning(
                        'schema "net" or the pg_net tables are missing, skipping request processing'
                    )
                    break
                if self.paced:
                    # The whole batch finishes, and is recorded, before the next is taken.
                    self._add_unrecorded(
                        await asyncio.gather(*(self._send(client, r) for r in requests))
                    )
                    await self._all_recorded.wait()
                    # src/worker.c:415-418: at most a second's pause, cut short by a wake.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(latch.wait(), 1.0)
                    latch.clear()
                else:
                    for request in requests:
                        task = asyncio.create_task(self._send_and_record(client, request))
                        self._in_flight.add(task)
                        task.add_done_callback(self._in_flight.discard)
                if not requests and not expired:
                    break

    async def _pass(
        self, conn: psycopg.AsyncConnection[Any], room: int | None
    ) -> tuple[int, list[Request]]:
        """Expire old responses and take the next requests, in one round trip: how many
        responses expired, and the requests (at most a batch, and at most `room`)."""
        cursor = AsyncClientCursor(conn)
        await cursor.execute(
            queries()["pass"],
            {
                "batch_size": self.batch_size,
                "ttl": self.ttl,
                "room": room,
            },
        )
        expired = max(cursor.rowcount, 0)
        cursor.nextset()
        return expired, [
            Request(
                id=row[0],
                method=row[1],
                url=row[2],
                timeout_milliseconds=row[3],
                headers=[_header_line(line) for line in row[4]],
                body=row[5],
            )
            for row in await cursor.fetchall()
        ]

    async def _send_and_record(self, client: aiohttp.ClientSession, request: Request) -> None:
        try:
            self._add_unrecorded([await self._send(client, request)])
        finally:
            self._slot_freed.set()

    async def _send(self, client: aiohttp.ClientSession, request: Request) -> Response:
        timings = _Timings()
        try:
            async with asyncio.timeout(request.timeout_milliseconds / 1000):
                if self.latency:
                    await asyncio.sleep(self.latency)
                return await _transfer(client, request, timings)
        except TimeoutError:
            return Response(
                id=request.id,
                timed_out=True,
                error_msg=_timeout_message(timings, request.timeout_milliseconds),
            )
        except aiohttp.ClientError as exc:
            return Response(id=request.id, timed_out=False, error_msg=_curl_error(exc))
        except Exception as exc:
            # Whatever else failed (a header line aiohttp refuses...), recorded as pg_net does.
            error = f"{type(exc).__name__}: {exc}"
            return Response(id=request.id, timed_out=False, error_msg=error)

    def _add_unrecorded(self, responses: Sequence[Response]) -> None:
        if responses:
            self._unrecorded.extend(responses)
            self._all_recorded.clear()
            self._have_unrecorded.set()

    async def _write_responses(self, conn: psycopg.AsyncConnection[Any]) -> None:
        loop = asyncio.get_running_loop()
        last_write = float("-inf")
        while True:
            await self._have_unrecorded.wait()
            if not self.paced and (wait := last_write + self.record_interval - loop.time()) > 0:
                await asyncio.sleep(wait)
            last_write = loop.time()
            batch = list(self._unrecorded)
            await self._record(conn, batch)
            # Removed only once written: a pass that ends mid-write leaves them to the next.
            del self._unrecorded[: len(batch)]
            if not self._unrecorded:
                self._have_unrecorded.clear()
                self._all_recorded.set()

    async def _record(self, conn: psycopg.AsyncConnection[Any], batch: Sequence[Response]) -> None:
        try:
            await conn.execute(queries()["record"], _record_params(batch))
        except (psycopg.OperationalError, psycopg.InterfaceError):
            raise
        except (psycopg.errors.UndefinedTable, psycopg.errors.InvalidSchemaName) as exc:
            # pg_net was dropped while these were in flight: there is no table to record into.
            log.warning("responses not recorded", error=str(exc), count=len(batch))
        except psycopg.Error:
            # Upstream inserts each response on its own (src/core.c:312), so one the table
            # refuses costs only itself: write them one by one.
            for response in batch:
                try:
                    await conn.execute(queries()["record"], _record_params([response]))
                except (psycopg.OperationalError, psycopg.InterfaceError):
                    raise
                except psycopg.Error as exc:
                    log.warning("response not recorded", id=response.id, error=str(exc))


class _CurlResolver(aiohttp.ThreadedResolver):
    """The system's resolver, except that `localhost` is both loopback addresses, as curl has
    it (curl answers localhost and *.localhost itself, RFC 6761), whatever /etc/hosts says."""

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        name = host.lower().rstrip(".")
        if name == "localhost" or name.endswith(".localhost"):
            return [
                ResolveResult(
                    hostname=host,
                    host=address,
                    port=port,
                    family=address_family,
                    proto=0,
                    flags=socket.AI_NUMERICHOST,
                )
                for address, address_family in (
                    ("::1", socket.AF_INET6),
                    ("127.0.0.1", socket.AF_INET),
                )
                if family in (socket.AF_UNSPEC, address_family)
            ]
        return await super().resolve(host, port, family)


@contextlib.asynccontextmanager
async def _http_client(max_in_flight: int) -> Any:
    trace = aiohttp.TraceConfig()

    async def mark(step: str, context: SimpleNamespace) -> None:
        timings = (context.trace_request_ctx or {}).get("timings")
        if isinstance(timings, _Timings):
            timings.mark(step)

    async def on_dns_end(_: Any, context: SimpleNamespace, __: Any) -> None:
        await mark("namelookup", context)

    async def on_connected(_: Any, context: SimpleNamespace, __: Any) -> None:
        await mark("connect", context)

    async def on_reused(_: Any, context: SimpleNamespace, __: Any) -> None:
        await mark("namelookup", context)
        await mark("connect", context)

    async def on_sent(_: Any, context: SimpleNamespace, __: Any) -> None:
        await mark("pretransfer", context)

    trace.on_dns_resolvehost_end.append(on_dns_end)
    trace.on_dns_cache_hit.append(on_dns_end)
    trace.on_connection_create_end.append(on_connected)
    trace.on_connection_reuseconn.append(on_reused)
    trace.on_request_headers_sent.append(on_sent)
    async with aiohttp.ClientSession(
        headers={"User-Agent": USER_AGENT},
        # curl adds no Accept-Encoding and does not decompress (pg_net sets no
        # CURLOPT_ACCEPT_ENCODING); a body's type is curl's (FORM_CONTENT_TYPE) unless set.
        skip_auto_headers=("Accept-Encoding", "Content-Type"),
        auto_decompress=False,
        # curl resolves a name to IPv4 and IPv6 both (family 0), and takes long header lines.
        connector=aiohttp.TCPConnector(
            limit=max_in_flight, family=socket.AF_UNSPEC, resolver=_CurlResolver()
        ),
        max_line_size=MAX_HEADER_BYTES,
        max_field_size=MAX_HEADER_BYTES,
        trace_configs=[trace],
        timeout=aiohttp.ClientTimeout(total=None),
    ) as client:
        yield client


async def _transfer(client: aiohttp.ClientSession, request: Request, timings: _Timings) -> Response:
    headers = list(request.headers)
    if request.body is not None and not any(k.lower() == "content-type" for k, _ in headers):
        headers.append(("Content-Type", FORM_CONTENT_TYPE))
    async with client.request(
        request.method.upper(),
        request.url,
        headers=headers,
        data=request.body,
        trace_request_ctx={"timings": timings},
    ) as reply:
        body = await reply.read()
        # The reply's headers as curl lists them, each name once: jsonb keeps the last of a
        # repeated key (src/core.c:225-233), while content_type is the first Content-Type
        # (curl_easy_header index 0, src/core.c:267). Bytes that are not UTF-8 become U+FFFD:
        # PostgreSQL's jsonb refuses them where upstream's C code stores them unchecked.
        reply_headers: dict[str, str] = {}
        content_type = None
        for raw_name, raw_value in reply.raw_headers:
            name, value = _text(raw_name), _text(raw_value)
            reply_headers[name] = value
            if content_type is None and name.lower() == "content-type":
                content_type = value
        # Upstream hands the body to PostgreSQL as a C string (src/core.c:258-260): it ends at
        # the first NUL, and an empty body is NULL.
        content = _text(body.split(b"\x00", 1)[0])
        return Response(
            id=request.id,
            status_code=reply.status,
            content=content or None,
            headers=reply_headers,
            content_type=content_type,
            timed_out=False,
        )


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").replace("\x00", "")


def _header_line(line: str) -> tuple[str, str]:
    name, _, value = line.partition(":")
    return name.strip(), value.strip()


def _record_params(batch: Sequence[Response]) -> dict[str, list[Any]]:
    return {
        "ids": [r.id for r in batch],
        "status_codes": [r.status_code for r in batch],
        "contents": [r.content for r in batch],
        "headers": [Jsonb(r.headers) if r.headers is not None else None for r in batch],
        "content_types": [r.content_type for r in batch],
        "timed_out": [r.timed_out for r in batch],
        "error_msgs": [r.error_msg for r in batch],
    }


def _timeout_message(timings: _Timings, timeout_milliseconds: int) -> str:
    """Upstream's detailed timeout message and its split of the time (src/errors.c:26-84)."""
    total = time.monotonic() - timings.started
    at_dns = timings.namelookup == 0 and timings.connect == 0
    at_handshake = timings.pretransfer == 0
    if at_dns:
        dns, handshake, http = total, 0.0, 0.0
    elif at_handshake:
        dns, handshake, http = timings.namelookup, total - timings.namelookup, 0.0
    else:
        # No TLS split here: aiohttp reports the TCP and TLS handshakes as one step.
        dns = timings.namelookup
        handshake = timings.connect - timings.namelookup
        http = total - timings.pretransfer
    return (
        f"Timeout of {timeout_milliseconds} ms reached. Total time: {total * 1000:f} ms"
        f" (DNS time: {dns * 1000:f} ms, TCP/SSL handshake time: {handshake * 1000:f} ms,"
        f" HTTP Request/Response time: {http * 1000:f} ms)"
    )


def _curl_error(exc: aiohttp.ClientError) -> str:
    """curl_easy_strerror's text for the failure, as upstream records it (src/core.c:288)."""
    if isinstance(exc, aiohttp.ClientConnectorDNSError):
        return "Couldn't resolve host name"
    if isinstance(exc, aiohttp.ClientConnectorCertificateError | aiohttp.ClientSSLError):
        return "SSL peer certificate or SSH remote key was not OK"
    if isinstance(exc, aiohttp.ClientConnectorError):
        return "Couldn't connect to server"
    if isinstance(exc, aiohttp.ServerDisconnectedError):
        return "Server returned nothing (no headers, no data)"
    if isinstance(exc, aiohttp.TooManyRedirects):
        return "Number of redirects hit maximum amount"
    if isinstance(exc, aiohttp.NonHttpUrlClientError):
        return "Unsupported protocol"
    if isinstance(exc, aiohttp.InvalidURL):
        return "URL using bad/illegal format or missing URL"
    if isinstance(exc, aiohttp.ClientPayloadError):
        return "Failure when receiving data from the peer"
    if isinstance(exc, aiohttp.ClientResponseError):
        return "Weird server reply"
    return f"{type(exc).__name__}: {exc}"


async def _first_failure(*coroutines: Awaitable[None]) -> None:
    """Run the coroutines together until one of them ends; raise how it ended."""
    tasks = [asyncio.ensure_future(c) for c in coroutines]
    try:
        done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
        for task in done:
            task.result()
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
