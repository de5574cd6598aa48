"""The signed doorbell end to end: trigger, pg_net stand-in queue, delivery worker, HTTP.

These tests commit, because pg_net (and its stand-in) sends only after commit.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import psycopg
import pytest
from svix.webhooks import Webhook

from jobhook import vault
from jobhook.devstack.cluster import free_port
from jobhook.devstack.delivery import DeliveryWorker
from tests.conftest import DEMO_USER, Receiver, Stack

pytestmark = pytest.mark.commits

STANDARD_WEBHOOKS_VECTOR = (
    "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw",
    "msg_p5jXN8AQM9LWM0D4loKWxJek",
    1614265330,
    '{"test": 2432232314}',
    "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE=",
)


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


async def point_vault_at(url: str, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        vault.write(conn, vault.WEBHOOK_URL, url)


async def insert_as_user(database_url: str, count: int = 1, *, commit: bool = True) -> list[str]:
    """Insert jobs as the demo user through the API roles, as PostgREST does."""
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        claims = json.dumps({"sub": DEMO_USER, "role": "authenticated"})
        await conn.execute("select set_config('request.jwt.claims', %s, true)", (claims,))
        await conn.execute("set local role authenticated")
        cursor = await conn.execute(
            "insert into public.jobs (job_type, payload)"
            " select 'sample_task', jsonb_build_object('n', n) from generate_series(1, %s) n"
            " returning id",
            (count,),
        )
        ids = [str(row[0]) for row in await cursor.fetchall()]
        if commit:
            await conn.commit()
        else:
            await conn.rollback()
        return ids


async def responses(database_url: str, expected: int, within: float = 10) -> list[tuple[Any, ...]]:
    deadline = time.monotonic() + within
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            cursor = await conn.execute(
                "select status_code, timed_out, error_msg, content"
                " from net._http_response order by id"
            )
            rows = await cursor.fetchall()
            if len(rows) >= expected or time.monotonic() > deadline:
                return rows
            await asyncio.sleep(0.02)


def test_sql_signer_reproduces_the_standard_webhooks_vector(
    db: psycopg.Connection[tuple[Any, ...]],
) -> None:
    secret, msg_id, timestamp, payload, expected = STANDARD_WEBHOOKS_VECTOR
    row = db.execute(
        "select jobhook.sign_webhook(%s, %s, %s, %s)", (secret, msg_id, timestamp, payload)
    ).fetchone()
    assert row == (expected,)


async def test_an_insert_rings_once_with_a_signature_svix_accepts(
    committed: Stack, receiver: Receiver
) -> None:
    await point_vault_at(receiver.url, committed.url)
    async with delivering(committed.admin_url):
        started = time.perf_counter()
        [job_id] = await insert_as_user(committed.url)
        [request] = await asyncio.to_thread(receiver.wait_for, 1)
        elapsed_ms = (time.perf_counter() - started) * 1000
        rows = await responses(committed.url, 1)
    print(f"insert + commit -> request received: {elapsed_ms:.1f} ms")

    assert request.path == "/webhooks/jobs"
    assert request.headers["content-type"] == "application/json"
    # svix checks the signature over the exact bytes that arrived, and the timestamp's age.
    Webhook(committed.webhook_secret).verify(request.body, request.headers)
    assert json.loads(request.body) == {
        "type": "jobs.dispatch",
        "jobs": [{"id": job_id, "job_type": "sample_task"}],
    }
    assert request.headers["webhook-id"].startswith("msg_")
    assert [(r[0], r[1], r[2]) for r in rows] == [(202, False, None)]
    assert await asyncio.to_thread(receiver.wait_for, 2, 0.2) == [request]


async def test_a_rolled_back_insert_sends_nothing(committed: Stack, receiver: Receiver) -> None:
    await point_vault_at(receiver.url, committed.url)
    async with delivering(committed.admin_url):
        await insert_as_user(committed.url, commit=False)
        # The committed insert after it is the marker: once it arrives, anything the rolled
        # back one had sent would have arrived before it.
        [job_id] = await insert_as_user(committed.url)
        received = await asyncio.to_thread(receiver.wait_for, 1)
    assert [json.loads(r.body)["jobs"][0]["id"] for r in received] == [job_id]


async def test_a_bulk_insert_is_one_request_per_500_jobs(
    committed: Stack, receiver: Receiver
) -> None:
    await point_vault_at(receiver.url, committed.url)
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute("update jobhook.settings set max_unfinished_per_user = 2000")
    async with delivering(committed.admin_url):
        ids = await insert_as_user(committed.url, count=1001)
        received = await asyncio.to_thread(receiver.wait_for, 3)
    assert len(received) == 3
    sent = [job["id"] for r in received for job in json.loads(r.body)["jobs"]]
    assert sorted(sent) == sorted(ids)
    for request in received:
        Webhook(committed.webhook_secret).verify(request.body, request.headers)


async def test_a_slow_endpoint_is_recorded_as_timed_out(
    committed: Stack, receiver: Receiver
) -> None:
    await point_vault_at(receiver.url, committed.url)
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute("update jobhook.settings set dispatch_timeout_ms = 200")
    receiver.delay = 1.0
    async with delivering(committed.admin_url):
        await insert_as_user(committed.url)
        rows = await responses(committed.url, 1)
    # Upstream's detailed message (supabase/pg_net v0.20.4 src/errors.c:79-82); the connection
    # was made and the request sent, so the time went to the HTTP step.
    [(status, timed_out, error, _)] = rows
    assert (status, timed_out) == (None, True)
    assert re.fullmatch(
        r"Timeout of 200 ms reached\. Total time: [0-9.]+ ms \(DNS time: [0-9.]+ ms,"
        r" TCP/SSL handshake time: [0-9.]+ ms, HTTP Request/Response time: ([0-9.]+) ms\)",
        error,
    ), error
    assert float(error.rsplit(": ", 1)[1].split()[0]) > 0


async def test_an_unreachable_endpoint_is_recorded_as_an_error(committed: Stack) -> None:
    await point_vault_at(f"http://127.0.0.1:{free_port()}/webhooks/jobs", committed.url)
    async with delivering(committed.admin_url):
        await insert_as_user(committed.url)
        rows = await responses(committed.url, 1)
    assert len(rows) == 1
    status, timed_out, error, _ = rows[0]
    assert status is None
    assert timed_out is False
    assert error == "Couldn't connect to server"  # curl_easy_strerror(CURLE_COULDNT_CONNECT)


async def test_requests_queued_while_the_worker_is_down_go_out_when_it_starts(
    committed: Stack, receiver: Receiver
) -> None:
    await point_vault_at(receiver.url, committed.url)
    ids = await insert_as_user(committed.url, count=3)
    ids += await insert_as_user(committed.url, count=2)
    with psycopg.connect(committed.url) as conn:
        assert conn.execute("select count(*) from net.http_request_queue").fetchone() == (2,)
    async with delivering(committed.admin_url):
        received = await asyncio.to_thread(receiver.wait_for, 2)
    assert sorted(job["id"] for r in received for job in json.loads(r.body)["jobs"]) == sorted(ids)


async def test_old_responses_expire(committed: Stack) -> None:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute(
            "insert into net._http_response (id, status_code, created) values"
            " (1, 200, now() - interval '7 hours'), (2, 200, now() - interval '5 hours')"
        )
    async with delivering(committed.admin_url, ttl=timedelta(hours=6)):
        rows = await responses(committed.url, 0)
        deadline = time.monotonic() + 5
        while len(rows) != 1 and time.monotonic() < deadline:
            rows = await responses(committed.url, 0)
    assert [r[0] for r in rows] == [200]
    with psycopg.connect(committed.url) as conn:
        assert conn.execute("select array_agg(id) from net._http_response").fetchone() == ([2],)


async def test_check_worker_is_up_sees_the_worker(committed: Stack) -> None:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        with pytest.raises(psycopg.errors.RaiseException, match="worker is not up"):
            conn.execute("select net.check_worker_is_up()")
        async with delivering(committed.admin_url):
            conn.execute("select net.check_worker_is_up()")
