"""Fixtures shared by every test tier: a throwaway PostgreSQL 15 cluster per test session.

The cluster is built by the dev stack's own code (jobhook.cluster, jobhook.database), so the tests
run the migrations exactly as `make dev` does. pg_cron can only be created in the database named
by cron.database_name, so the migrations run in `postgres`, as in the dev stack; isolation comes
from a transaction rolled back after each test (`db`), or, for tests that must commit (anything
that fires after commit: NOTIFY, pg_net deliveries, the runtime), from `committed`, which
restores the tables afterwards. The per-minute sweep is paused so it cannot race a test; tests
call jobhook.sweep() themselves.
"""

from __future__ import annotations

import json
import tempfile
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobhook import database
from jobhook.cluster import Cluster, free_port

DEMO_USER = "00000000-0000-4000-8000-00000000d3e0"
TEST_JOB_TYPES = [
    # name, max_attempts, timeout_seconds, backoff_base_seconds
    ("sample_task", 3, 60, 2.0),
    ("one_shot", 1, 60, 2.0),
]


@dataclass(frozen=True)
class Stack:
    """The session cluster, migrated and seeded, and the Vault values it was seeded with."""

    cluster: Cluster
    url: str
    webhook_url: str
    webhook_secret: str


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
    prepared = database.prepare(cluster.url)
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute("update cron.job set active = false where jobname = 'jobhook-sweep'")
        _reset_job_types(conn)
    return Stack(
        cluster=cluster,
        url=cluster.url,
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
def committed(test_db: Stack) -> Iterator[Stack]:
    """For tests that commit: afterwards, the tables are as the session started."""
    yield test_db
    with psycopg.connect(test_db.url, autocommit=True) as conn:
        conn.execute(
            "truncate public.jobs, net.http_request_queue, net._http_response;"
            " delete from jobhook.settings;"
            " insert into jobhook.settings default values;"
        )
        _reset_job_types(conn)
        conn.execute(
            "select vault.update_secret(id, %s) from vault.secrets where name = %s",
            (test_db.webhook_url, "jobhook_webhook_url"),
        )
        conn.execute(
            "select vault.update_secret(id, %s) from vault.secrets where name = %s",
            (test_db.webhook_secret, "jobhook_webhook_secret"),
        )


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


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state: Receiver

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length", "0"))
            body = self.rfile.read(length)
            if state.delay:
                threading.Event().wait(state.delay)
            with state.arrived:
                state.requests.append(
                    Received(
                        "POST", self.path, {k.lower(): v for k, v in self.headers.items()}, body
                    )
                )
                state.arrived.notify_all()
            payload = b'{"accepted": true}'
            self.send_response(state.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    port = server.server_address[1]
    state = Receiver(url=f"http://127.0.0.1:{port}/webhooks/jobs")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
