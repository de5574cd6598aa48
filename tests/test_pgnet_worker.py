"""The delivery worker against pg_net 0.20.4's worker (supabase/pg_net src/worker.c, src/core.c).

Each test has a database of its own holding only the stand-in pg_net, so it can drop and
re-create the extension, and a real HTTP server on a loopback port.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest

from jobhook.devstack.cluster import Cluster
from jobhook.devstack.delivery import DeliveryWorker
from tests.conftest import http_server

pytestmark = pytest.mark.commits


@dataclass
class Seen:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    # How many responses the database held when this request arrived.
    recorded_before: int | None = None


@dataclass
class Server:
    url: str
    seen: list[Seen] = field(default_factory=list)
    arrived: threading.Condition = field(default_factory=threading.Condition)
    database_url: str | None = None  # set: count the recorded responses at each arrival

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Seen]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.seen) >= count, timeout=timeout)
            return list(self.seen)


@pytest.fixture
def server() -> Iterator[Server]:
    state = Server(url="")

    class Handler(BaseHTTPRequestHandler):
        def handle_any(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            seen = Seen(
                self.command,
                self.path,
                {k.lower(): v for k, v in self.headers.items()},
                self.rfile.read(length),
            )
            if state.database_url:
                with psycopg.connect(state.database_url, autocommit=True) as conn:
                    row = conn.execute("select count(*) from net._http_response").fetchone()
                    seen.recorded_before = row[0] if row else None
            with state.arrived:
                state.seen.append(seen)
                state.arrived.notify_all()
            if self.path.startswith("/empty"):
                return  # the connection closes with no reply at all
            if self.path.startswith("/malformed"):
                self.wfile.write(b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\nok")
                return
            lines = [b"HTTP/1.1 200 OK", b"Content-Length: 2", b"Connection: close"]
            if self.path.startswith("/big-header"):
                lines.append(b"X-Big: " + b"v" * 20_000)  # curl takes up to 100 KiB
            if self.path.startswith("/bad-header"):
                lines.append(b"X-Bad: caf\xe9 \xff")  # Latin-1, not UTF-8
            if self.path.startswith("/repeated"):
                lines += [
                    b"X-Twice: first",
                    b"X-Twice: last",
                    b"Content-Type: text/plain",
                    b"Content-Type: application/json",
                ]
            self.wfile.write(b"\r\n".join([*lines, b"", b"ok"]))

        do_GET = do_POST = do_DELETE = handle_any

        def log_message(self, format: str, *args: Any) -> None:
            pass

    with http_server(Handler) as base:
        state.url = base
        yield state


@pytest.fixture
def net_db(cluster: Cluster) -> Iterator[str]:
    """A database of its own with only the pg_net stand-in in it, used as the superuser: the
    worker connects as one (pg_net.username unset), and these tests drop and re-create the
    extension, change cluster settings and end the worker's session, as upstream's suite does."""
    name = f"pgnet_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
        conn.execute(f"create database {name}")
    url = cluster.admin_database_url(name)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("create extension pg_net")
    try:
        yield url
    finally:
        with psycopg.connect(cluster.admin_url, autocommit=True) as conn:
            conn.execute(f"drop database {name} with (force)")


@contextlib.asynccontextmanager
async def delivering(url: str, **options: Any) -> AsyncIterator[DeliveryWorker]:
    worker = DeliveryWorker(url, **options)
    task = asyncio.create_task(worker.run())
    try:
        await asyncio.wait_for(worker.ready.wait(), timeout=10)
        yield worker
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def sql(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    """Run one statement from a thread, so the worker under test goes on meanwhile."""
    return await asyncio.to_thread(_sql, url, statement, *params)


def _sql(url: str, statement: str, *params: Any) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cursor = conn.execute(statement.encode(), params or None)
        return cursor.fetchall() if cursor.description else []


async def responses(url: str, expected: int, within: float = 10) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + within
    while True:
        rows = await sql(
            url,
            "select id, status_code, timed_out, error_msg, headers, content_type"
            " from net._http_response order by id",
        )
        if len(rows) >= expected or time.monotonic() > deadline:
            return rows
        await asyncio.sleep(0.02)


async def reload_until(url: str, setting: str, value: str) -> None:
    """Reload the configuration and wait until a new session sees `setting` as `value`."""
    await sql(url, "select pg_reload_conf()")
    deadline = time.monotonic() + 10
    while await sql(url, "select current_setting(%s)", setting) != [(value,)]:
        assert time.monotonic() < deadline, f"{setting} never became {value!r}"
        await asyncio.sleep(0.02)


async def test_survives_pg_net_dropped_and_recreated(net_db: str, server: Server) -> None:
    async with delivering(net_db):
        # Enough requests for a client library to start preparing its statements: after the
        # extension is re-created, a statement prepared on the old tables fails with "cached
        # plan must not change result type", which once ended this worker for good.
        for n in range(8):
            await sql(net_db, "select net.http_get(%s)", f"{server.url}/before/{n}")
            await responses(net_db, n + 1)
        await sql(net_db, "drop extension pg_net")
        await sql(net_db, "create extension pg_net")
        await sql(net_db, "select net.http_get(%s)", f"{server.url}/after")
        rows = await responses(net_db, 1)
    assert [r[1] for r in rows] == [200]
    assert server.wait_for(9)[-1].path == "/after"


async def test_survives_schema_net_missing_and_serves_it_once_back(
    net_db: str, server: Server
) -> None:
    await sql(net_db, "drop extension pg_net")
    async with delivering(net_db) as worker:
        # Woken with nothing to work on: upstream skips the pass (src/worker.c:307-312).
        await sql(net_db, "select pg_notify('pg_net_wake', '')")
        await sql(net_db, "create extension pg_net")
        await sql(net_db, "select net.http_get(%s)", f"{server.url}/back")
        rows = await responses(net_db, 1)
        assert worker.ready.is_set()
    assert [r[1] for r in rows] == [200]


async def test_survives_its_connections_being_ended(net_db: str, server: Server) -> None:
    async with delivering(net_db) as worker:
        await sql(
            net_db,
            "select pg_terminate_backend(pid) from pg_stat_activity"
            " where application_name = 'pg_net 0.20.4'",
        )
        await asyncio.wait_for(worker.restarted.wait(), timeout=10)
        await asyncio.wait_for(worker.ready.wait(), timeout=10)
        await sql(net_db, "select net.http_get(%s)", f"{server.url}/later")
        rows = await responses(net_db, 1)
    assert worker.restarts >= 1
    assert [r[1] for r in rows] == [200]


async def test_a_reply_header_that_is_not_utf8_costs_no_response(
    net_db: str, server: Server
) -> None:
    async with delivering(net_db):
        await sql(
            net_db,
            "select net.http_get(%s || case when n = 3 then '/bad-header' else '/ok' end)"
            " from generate_series(1, 6) n",
            server.url,
        )
        rows = await responses(net_db, 6)
    assert [r[1] for r in rows] == [200] * 6
    [bad] = [r for r in rows if r[4].get("X-Bad")]
    assert bad[4]["X-Bad"] == "caf\ufffd \ufffd"


async def test_a_response_the_table_refuses_costs_only_itself(net_db: str, server: Server) -> None:
    await sql(
        net_db,
        """
        create function refuse_third() returns trigger language plpgsql as $$
        begin
          if new.id = 3 then raise exception 'refused'; end if;
          return new;
        end $$;
        create trigger refuse_third before insert on net._http_response
          for each row execute function refuse_third();
        """,
    )
    async with delivering(net_db, record_interval=1.0):
        await sql(net_db, "select net.http_get(%s) from generate_series(1, 6)", f"{server.url}/ok")
        rows = await responses(net_db, 5)
    assert [r[0] for r in rows] == [1, 2, 4, 5, 6]


async def test_rows_put_in_the_queue_wait_for_the_next_wake(net_db: str, server: Server) -> None:
    async with delivering(net_db):
        # Past the pass a worker makes when it starts (src/worker.c:455): idle from here on.
        await sql(net_db, "select net.http_get(%s)", f"{server.url}/first")
        await responses(net_db, 1)
        # Upstream's worker takes the queue only when woken (src/worker.c:288-293).
        await sql(
            net_db,
            "insert into net.http_request_queue (method, url, timeout_milliseconds)"
            " values ('GET', %s, 5000)",
            f"{server.url}/direct",
        )
        # Long enough for a polling worker to have taken it (the old one looked every second).
        await asyncio.sleep(1.5)
        assert await sql(net_db, "select count(*) from net.http_request_queue") == [(1,)]
        await sql(net_db, "select net.wake()")
        rows = await responses(net_db, 2)
    assert [r[1] for r in rows] == [200, 200]
    assert [s.path for s in server.wait_for(2)] == ["/first", "/direct"]


async def test_paced_takes_one_batch_at_a_time_of_pg_net_batch_size(
    net_db: str, server: Server
) -> None:
    server.database_url = net_db
    await sql(net_db, "alter system set pg_net.batch_size = 2")
    try:
        await reload_until(net_db, "pg_net.batch_size", "2")
        async with delivering(net_db, paced=True):
            await sql(
                net_db, "select net.http_get(%s) from generate_series(1, 5)", f"{server.url}/ok"
            )
            await responses(net_db, 5)
    finally:
        await sql(net_db, "alter system reset pg_net.batch_size")
        await reload_until(net_db, "pg_net.batch_size", "200")
    # Batches of two, each sent only once the one before was sent, answered and recorded
    # (src/worker.c:300-418): the requests arrive in order, two to a batch boundary.
    seen = server.wait_for(5)
    assert [s.recorded_before for s in seen] == [0, 0, 2, 2, 4]


async def test_unpaced_does_not_wait_for_a_batch_to_be_recorded(
    net_db: str, server: Server
) -> None:
    server.database_url = net_db
    async with delivering(net_db, batch_size=2, record_interval=5.0):
        await sql(net_db, "select net.http_get(%s) from generate_series(1, 5)", f"{server.url}/ok")
        seen = await asyncio.to_thread(server.wait_for, 5)
    # The first write goes out at once, with what of the first batch has been answered by then
    # (one response or, on a busy machine, both); the next write waits out record_interval.
    # Every request went out before a third response was recorded: a worker that waited for
    # each batch to be recorded would send the fifth only after four.
    assert len(seen) == 5
    assert max(s.recorded_before or 0 for s in seen) <= 2


async def test_latency_is_spent_inside_the_request_timeout(net_db: str, server: Server) -> None:
    async with delivering(net_db, paced=True, latency=5.0):
        await sql(
            net_db, "select net.http_get(%s, timeout_milliseconds => 100)", f"{server.url}/ok"
        )
        rows = await responses(net_db, 1)
    assert [(r[1], r[2]) for r in rows] == [(None, True)]
    assert rows[0][3].startswith("Timeout of 100 ms reached. Total time: ")
    assert server.seen == []


async def test_requests_are_sent_as_curl_sends_them(net_db: str, server: Server) -> None:
    async with delivering(net_db):
        await sql(
            net_db,
            """select net.http_delete(%s, body => '{"a": 1}', headers => '{"X-A": "1"}')""",
            f"{server.url}/delete",
        )
        await sql(net_db, "select net.http_get(%s)", f"{server.url}/repeated")
        rows = await responses(net_db, 2)
    delete, get = sorted(server.wait_for(2), key=lambda s: s.path)
    assert delete.method == "DELETE"
    assert delete.body == b'{"a": 1}'
    # curl types a CURLOPT_POSTFIELDS body so (src/core.c:92-97), and pg_net asks for no
    # compression (no CURLOPT_ACCEPT_ENCODING).
    assert delete.headers["content-type"] == "application/x-www-form-urlencoded"
    assert delete.headers["x-a"] == "1"
    assert delete.headers["user-agent"] == "pg_net/0.20.4"
    assert "accept-encoding" not in delete.headers
    assert "accept-encoding" not in get.headers
    # The last of a repeated reply header in `headers` (jsonb keeps the last key), the first
    # Content-Type in `content_type` (curl_easy_header index 0, src/core.c:267).
    [repeated] = [r for r in rows if "X-Twice" in r[4]]
    assert repeated[4]["X-Twice"] == "last"
    assert repeated[4]["Content-Type"] == "application/json"
    assert repeated[5] == "text/plain"


async def test_worker_restart_and_wait_until_running(net_db: str, server: Server) -> None:
    async with delivering(net_db) as worker:
        await sql(net_db, "select net.wait_until_running()")
        assert await sql(net_db, "select net.worker_restart()") == [(True,)]
        await asyncio.wait_for(worker.restarted.wait(), timeout=10)
        assert worker.restarts == 1
        await asyncio.wait_for(worker.ready.wait(), timeout=10)
        await sql(net_db, "select net.wait_until_running()")
        [(request_id,)] = await sql(net_db, "select net.http_get(%s)", f"{server.url}/ok")
        # Upstream's blocking collect (sql/pg_net.sql:50-73, 288-337).
        [(status, message)] = await sql(
            net_db,
            "select (r).status, (r).message from net._http_collect_response(%s, async => false) r",
            request_id,
        )
    assert (status, message) == ("SUCCESS", "ok")


async def test_localhost_is_both_loopback_addresses_as_for_curl(net_db: str) -> None:
    # A server on ::1 only: curl resolves localhost to ::1 and 127.0.0.1 itself, whatever the
    # hosts file says, so pg_net reaches it.
    class V6Server(ThreadingHTTPServer):
        address_family = socket.AF_INET6

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(204)
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            pass

    v6 = V6Server(("::1", 0), Handler)
    thread = threading.Thread(target=v6.serve_forever, daemon=True)
    thread.start()
    try:
        async with delivering(net_db):
            await sql(
                net_db, "select net.http_get(%s)", f"http://localhost:{v6.server_address[1]}/"
            )
            rows = await responses(net_db, 1)
    finally:
        v6.shutdown()
        v6.server_close()
    assert [(r[1], r[3]) for r in rows] == [(204, None)]


async def test_failures_are_worded_as_curl_words_them(net_db: str, server: Server) -> None:
    async with delivering(net_db):
        for path in ("/empty", "/malformed", "/big-header"):
            await sql(net_db, "select net.http_get(%s)", f"{server.url}{path}")
        rows = await responses(net_db, 3)
    # curl_easy_strerror's texts (src/core.c:288): CURLE_GOT_NOTHING, CURLE_WEIRD_SERVER_REPLY.
    # (Which header blocks count as malformed differs: see docs/design.md.)
    assert [(r[1], r[2], r[3]) for r in rows] == [
        (None, False, "Server returned nothing (no headers, no data)"),
        (None, False, "Weird server reply"),
        (200, False, None),
    ]
    assert len(rows[2][4]["X-Big"]) == 20_000


async def test_the_worker_goes_where_pg_net_database_name_says(
    cluster: Cluster, net_db: str, server: Server
) -> None:
    # Upstream's worker connects to pg_net.database_name (src/worker.c:258, 504-506): started on
    # the cluster's default database, this one moves to the one the setting names.
    name = net_db.rsplit("/", 1)[1]
    await sql(net_db, f"alter system set pg_net.database_name = '{name}'")
    try:
        await reload_until(net_db, "pg_net.database_name", name)
        async with delivering(cluster.admin_url):
            await sql(net_db, "select net.http_get(%s)", f"{server.url}/moved")
            rows = await responses(net_db, 1)
    finally:
        await sql(net_db, "alter system reset pg_net.database_name")
        await reload_until(net_db, "pg_net.database_name", "")
    assert [r[1] for r in rows] == [200]


async def test_pg_net_ttl_takes_effect_with_alter_system(net_db: str) -> None:
    await sql(
        net_db,
        "insert into net._http_response (id, status_code, created) values"
        " (1, 200, now() - interval '2 minutes'), (2, 200, now())",
    )
    await sql(net_db, "alter system set pg_net.ttl = '1 minute'")
    try:
        await reload_until(net_db, "pg_net.ttl", "1 minute")
        # Expiry runs on every pass (src/worker.c:316), the first one at start included.
        async with delivering(net_db):
            deadline = time.monotonic() + 10
            while len(await responses(net_db, 0)) != 1:
                assert time.monotonic() < deadline, "the old response never expired"
                await asyncio.sleep(0.02)
    finally:
        await sql(net_db, "alter system reset pg_net.ttl")
        await reload_until(net_db, "pg_net.ttl", "6 hours")
    assert [r[0] for r in await responses(net_db, 0)] == [2]
