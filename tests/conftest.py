"""Fixtures shared by every test tier: a throwaway PostgreSQL 15 cluster per test session.

The cluster is built by the dev stack's own code (jobhook.devstack), so the tests run the
migrations exactly as `make dev` does. pg_cron can only be created in the database named
by cron.database_name, so the migrations run in `postgres`, as in the dev stack; isolation comes
from a transaction rolled back after each test (`db`), or, for tests that must commit (anything
that fires after commit: NOTIFY, pg_net deliveries, the runtime), from `committed`, which
restores the tables afterwards. The per-minute sweep is paused so it cannot race a test; tests
call jobhook.sweep() themselves.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from jobhook import vault
from jobhook.config import LOCAL_ISSUER, LOCAL_JWT_SECRET, Settings
from jobhook.devstack import database
from jobhook.devstack.cluster import Cluster, free_port
from jobhook.devstack.stack import Served, serve

DEMO_USER = "00000000-0000-4000-8000-00000000d3e0"
# What the app under test is told, as the dev stack tells it: tokens signed with the supabase CLI's
# published local secret are accepted, and operator endpoints give their details to anyone.
LOCAL_STACK = {
    "SUPABASE_JWT_SECRET": LOCAL_JWT_SECRET,
    "JOBHOOK_PUBLIC_OPERATOR_ENDPOINTS": "true",
    # A test's app stops with the test: what still runs then is released at once, without
    # holding the suite up for a deploy's grace period.
    "JOBHOOK_SHUTDOWN_GRACE_SECONDS": "0.2",
}
TEST_JOB_TYPES = [
    # name, max_attempts, timeout_seconds, backoff_base_seconds
    ("sample_task", 3, 60, 2.0),
    ("one_shot", 1, 60, 2.0),
]


@dataclass(frozen=True)
class Stack:
    """The session cluster, migrated and seeded, and the Vault values it was seeded with.

    `url` is postgres's, as the app and a project's migrations connect on hosted Supabase;
    `admin_url` is the superuser's (supabase_admin), for what only the platform does there."""

    cluster: Cluster
    url: str
    admin_url: str
    webhook_url: str
    webhook_secret: str


TIERS = ("unit", "integration", "e2e", "chaos")
# The fixtures that make a test end to end, or that need the database.
E2E_FIXTURES = {"app_stack", "api_server", "served", "in_process_stack"}
DATABASE_FIXTURES = {"cluster", "test_db", "db", "admin_db", "committed"}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Give every test its tier, from where it lives and what it uses, so a newcomer can run one
    tier (`pytest -m unit`) while `make test` runs them all in one run."""
    for item in items:
        used = set(getattr(item, "fixturenames", ()))
        if any(item.get_closest_marker(tier) for tier in TIERS):
            continue  # a test that starts its own stack or cluster says which tier it is
        if "chaos" in item.path.parts:
            item.add_marker(pytest.mark.chaos)
        elif used & E2E_FIXTURES:
            item.add_marker(pytest.mark.e2e)
        elif used & DATABASE_FIXTURES:
            item.add_marker(pytest.mark.integration)
        else:
            item.add_marker(pytest.mark.unit)


@pytest.fixture(scope="session", autouse=True)
def quiet_logs() -> None:
    """The apps the tests start leave logging to their caller: log as a deployment does (JSON
    lines), from warnings up, rather than through structlog's default console renderer."""
    from jobhook import logs

    logs.configure(level="WARNING")


@pytest.fixture(scope="session")
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="jobhook-test-"))
    cluster = Cluster(root, port=free_port())
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture(scope="session")
def test_db(cluster: Cluster) -> Stack:
    prepared = database.prepare(cluster.url, admin_url=cluster.admin_url)
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        # postgres may read cron.job but change its jobs only through pg_cron's functions.
        conn.execute(
            "select cron.alter_job(jobid, active := false) from cron.job"
            " where jobname = 'jobhook-sweep'"
        )
        _reset_job_types(conn)
    return Stack(
        cluster=cluster,
        url=cluster.url,
        admin_url=cluster.admin_url,
        webhook_url=prepared.webhook_url,
        webhook_secret=prepared.webhook_secret,
    )


@pytest.fixture
def db(test_db: Stack) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """A connection inside a transaction that is rolled back after the test."""
    with psycopg.connect(test_db.url) as conn:
        try:
            yield conn
        finally:
            conn.rollback()


@pytest.fixture
def admin_db(test_db: Stack) -> Iterator[psycopg.Connection[tuple[Any, ...]]]:
    """As `db`, as the superuser (supabase_admin): for instruments only the platform may use on
    hosted Supabase, such as loading auto_explain into a session."""
    with psycopg.connect(test_db.admin_url) as conn:
        try:
            yield conn
        finally:
            conn.rollback()


@pytest.fixture
def committed(test_db: Stack) -> Iterator[Stack]:
    """For tests that commit: afterwards, the tables are as the session started."""
    yield test_db
    with psycopg.connect(test_db.url, autocommit=True) as conn:
        conn.execute(
            "truncate public.jobs, net.http_request_queue, net._http_response;"
            " delete from jobhook.settings;"
            " insert into jobhook.settings default values;"
            # The next test's first insert rings, whenever this one's last did.
            " update jobhook.locks set rung_at = null where name = 'doorbell';"
            # and no runner the test ran still watches for its types.
            " delete from jobhook.drains;"
        )
        _reset_job_types(conn)
        vault.write(conn, vault.WEBHOOK_URL, test_db.webhook_url)
        vault.write(conn, vault.WEBHOOK_SECRET, test_db.webhook_secret)


def _reset_job_types(conn: psycopg.Connection[Any]) -> None:
    conn.execute("delete from jobhook.job_types")
    with conn.cursor() as cursor:
        cursor.executemany(
            "insert into jobhook.job_types (name, max_attempts, timeout_seconds,"
            " backoff_base_seconds) values (%s, %s, %s, %s)",
            TEST_JOB_TYPES,
        )


def act_as_user(conn: psycopg.Connection[Any], user_id: str) -> None:
    """What PostgREST does for a request with a user's JWT, for the rest of the transaction."""
    claims = json.dumps({"sub": user_id, "role": "authenticated", "aud": "authenticated"})
    conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
    conn.execute("set local role authenticated")


# -- a real HTTP endpoint that records what it receives ----------------------------------------


@dataclass
class Received:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Receiver:
    """An HTTP server on a free loopback port; answers `status` after `delay` seconds."""

    url: str
    requests: list[Received] = field(default_factory=list)
    status: int = 202
    delay: float = 0.0
    arrived: threading.Condition = field(default_factory=threading.Condition)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[Received]:
        with self.arrived:
            self.arrived.wait_for(lambda: len(self.requests) >= count, timeout=timeout)
            return list(self.requests)


@contextlib.contextmanager
def http_server(handler: type[BaseHTTPRequestHandler]) -> Iterator[str]:
    """A real HTTP server on a free loopback port, in a thread; yields its base URL."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


class QuietHandler(BaseHTTPRequestHandler):
    def reply(self, status: int, content_type: str, body: bytes) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(QuietHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if state.delay:
                threading.Event().wait(state.delay)
            with state.arrived:
                headers = {k.lower(): v for k, v in self.headers.items()}
                state.requests.append(Received("POST", self.path, headers, body))
                state.arrived.notify_all()
            self.reply(state.status, "application/json", b'{"accepted": true}')

    with http_server(Handler) as base:
        state.url = f"{base}/webhooks/jobs"
        yield state


# -- the runtime: delivery worker + app + local executor against the session cluster ------------


def insert_job(
    database_url: str,
    job_type: str,
    payload: dict[str, Any] | None = None,
    *,
    user_id: str = DEMO_USER,
    run_at_sql: str | None = None,
) -> UUID:
    """Insert one job as `user_id` through the API roles, and commit."""
    with psycopg.connect(database_url) as conn:
        act_as_user(conn, user_id)
        row = conn.execute(
            "insert into public.jobs (job_type, payload, run_at)"
            f" values (%s, %s, {run_at_sql or 'now()'}) returning id",
            (job_type, Jsonb(payload or {})),
        ).fetchone()
        assert row is not None
        return UUID(str(row[0]))


def insert_on(conn: psycopg.Connection[Any], job_type: str = "sample_task") -> UUID:
    """Insert one job for the demo user on `conn`, a trusted backend's connection."""
    row = conn.execute(
        "insert into public.jobs (user_id, job_type) values (%s, %s) returning id",
        (DEMO_USER, job_type),
    ).fetchone()
    assert row is not None
    return UUID(str(row[0]))


def queued_doorbells(conn: psycopg.Connection[Any]) -> list[list[str]]:
    """The ids each doorbell in pg_net's queue names, oldest first."""
    return [
        [job["id"] for job in json.loads(bytes(body).decode())["jobs"]]
        for (body,) in conn.execute("select body from net.http_request_queue order by id")
    ]


async def wait_for_job(
    database_url: str,
    job_id: UUID,
    until: Callable[[dict[str, Any]], bool],
    *,
    within: float = 30,
) -> dict[str, Any]:
    """Poll the row until `until(row)` holds; fail with the last row seen when it never does."""
    deadline = time.monotonic() + within
    async with await psycopg.AsyncConnection.connect(
        database_url, autocommit=True, row_factory=dict_row
    ) as conn:
        while True:
            cursor = await conn.execute("select * from public.jobs where id = %s", (job_id,))
            row = await cursor.fetchone()
            if row is not None and until(row):
                return row
            if time.monotonic() > deadline:
                raise AssertionError(f"job {job_id} never reached the condition; last: {row}")
            await asyncio.sleep(0.02)


def finished(row: dict[str, Any]) -> bool:
    return row["status"] in ("completed", "failed", "cancelled")


@pytest.fixture
async def app_stack(committed: Stack) -> AsyncIterator[Served]:
    """The delivery worker and the app (with the test job types) on a free port."""
    from functions.app import create_app
    from tests import handlers_for_tests

    handlers_for_tests.database_url = committed.url
    port = free_port()
    with psycopg.connect(committed.url, autocommit=True) as conn:
        vault.write(conn, vault.WEBHOOK_URL, f"http://127.0.0.1:{port}/webhooks/jobs")
        conn.execute(
            "create table if not exists public.test_executions"
            " (job_id uuid, attempt int, at timestamptz default clock_timestamp())"
        )
        conn.execute("truncate public.test_executions")
        # Supabase's default privileges would let clients read it; it is the tests' alone.
        conn.execute("revoke all on public.test_executions from anon, authenticated")
    settings = Settings(DATABASE_URL=committed.url, **LOCAL_STACK)  # type: ignore[arg-type]
    app = create_app(settings, job_registry=handlers_for_tests.registry, configure_logging=False)
    async with serve(settings, delivery_url=committed.admin_url, port=port, app=app) as served:
        yield served


AppFactory = Callable[..., Any]


@pytest.fixture
async def api_server(committed: Stack) -> AsyncIterator[AppFactory]:
    """Start the app (and the delivery worker) with extra settings: `await api_server(**env)`.

    It starts as the dev stack does (LOCAL_STACK); `SUPABASE_JWT_SECRET=""` takes the secret away.
    """
    from functions.app import create_app
    from tests import handlers_for_tests

    handlers_for_tests.database_url = committed.url
    stack = contextlib.AsyncExitStack()

    async def start(**environment: str) -> Served:
        port = free_port()
        with psycopg.connect(committed.url, autocommit=True) as conn:
            vault.write(conn, vault.WEBHOOK_URL, f"http://127.0.0.1:{port}/webhooks/jobs")
        settings = Settings(
            DATABASE_URL=committed.url,
            **{**LOCAL_STACK, **environment},  # type: ignore[arg-type]
        )
        app = create_app(
            settings, job_registry=handlers_for_tests.registry, configure_logging=False
        )
        return await stack.enter_async_context(
            serve(settings, delivery_url=committed.admin_url, port=port, app=app)
        )

    async with stack:
        yield start


def user_token(user_id: str = DEMO_USER, **overrides: Any) -> str:
    """An HS256 access token as the supabase CLI's local Auth issues them; `claim=None` leaves
    a claim out."""
    import jwt

    now = int(time.time())
    claims = {
        "iss": LOCAL_ISSUER,
        "sub": user_id,
        "role": "authenticated",
        "aud": "authenticated",
        "iat": now,
        "exp": now + 600,
    }
    claims.update(overrides)
    return jwt.encode({k: v for k, v in claims.items() if v is not None}, LOCAL_JWT_SECRET)


@pytest.fixture
def json_logs() -> Iterator[Callable[[], list[dict[str, Any]]]]:
    """The app's JSON log lines, as written while the test runs: call the fixture to read them."""
    import io
    import logging

    from jobhook import logs

    stream = io.StringIO()
    logs.configure(json=True)
    logging.getLogger().handlers[0].setStream(stream)  # type: ignore[attr-defined]

    def lines() -> list[dict[str, Any]]:
        return [json.loads(line) for line in stream.getvalue().splitlines() if line.startswith("{")]

    try:
        yield lines
    finally:
        logs.configure(level="WARNING")
