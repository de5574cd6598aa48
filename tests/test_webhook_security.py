"""Every bad delivery is refused with a 4xx in the one error shape, never a 5xx."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest
from svix.webhooks import Webhook

from functions.app import create_app
from jobhook import vault
from jobhook.config import Settings
from jobhook.devstack.cluster import free_port
from jobhook.devstack.stack import Served, app_server, serve
from tests import handlers_for_tests
from tests.conftest import Stack, finished, insert_job, wait_for_job

pytestmark = pytest.mark.commits

OTHER_SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def signed(
    secret: str, body: bytes, *, at: datetime | None = None, msg_id: str = "msg_test"
) -> dict[str, str]:
    at = at or datetime.now(tz=UTC)
    return {
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body.decode()),
        "content-type": "application/json",
    }


def dispatch_body(job_id: str = "3f1c1a8e-2c0e-4d35-9a49-5a8ef3c4b0a1") -> bytes:
    return json.dumps(
        {"type": "jobs.dispatch", "jobs": [{"id": job_id, "job_type": "sample_task"}]}
    ).encode()


@pytest.fixture
async def client(app_stack: Served) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=app_stack.url) as client:
        yield client


def assert_refused(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body: dict[str, Any] = reply.json()
    assert body["error"]["code"] == code
    assert body["error"]["message"]
    assert body["request_id"] == reply.headers["x-request-id"]
    return body


async def test_missing_headers(client: httpx.AsyncClient) -> None:
    reply = await client.post("/webhooks/jobs", content=dispatch_body())
    body = assert_refused(reply, 401, "invalid_signature")
    assert "webhook-id" in body["error"]["message"]


async def test_a_signature_made_with_another_secret(client: httpx.AsyncClient) -> None:
    body = dispatch_body()
    reply = await client.post("/webhooks/jobs", content=body, headers=signed(OTHER_SECRET, body))
    assert_refused(reply, 401, "invalid_signature")


async def test_a_stale_timestamp(client: httpx.AsyncClient, committed: Stack) -> None:
    body = dispatch_body()
    old = datetime.now(tz=UTC) - timedelta(minutes=6)
    reply = await client.post(
        "/webhooks/jobs", content=body, headers=signed(committed.webhook_secret, body, at=old)
    )
    refusal = assert_refused(reply, 401, "invalid_signature")
    assert "more than 5 minutes old" in refusal["error"]["message"]


async def test_a_future_timestamp(client: httpx.AsyncClient, committed: Stack) -> None:
    body = dispatch_body()
    ahead = datetime.now(tz=UTC) + timedelta(minutes=6)
    reply = await client.post(
        "/webhooks/jobs", content=body, headers=signed(committed.webhook_secret, body, at=ahead)
    )
    assert_refused(reply, 401, "invalid_signature")


@pytest.mark.parametrize(
    "signature", ["garbage", "v1,", "v1,not base64!", "v1,abc v2", "v1,a,b", "", "v1,abc  v1,def"]
)
async def test_a_malformed_signature_header(
    client: httpx.AsyncClient, committed: Stack, signature: str
) -> None:
    body = dispatch_body()
    headers = signed(committed.webhook_secret, body) | {"webhook-signature": signature}
    reply = await client.post("/webhooks/jobs", content=body, headers=headers)
    assert_refused(reply, 401, "invalid_signature")


async def test_a_non_numeric_timestamp(client: httpx.AsyncClient, committed: Stack) -> None:
    body = dispatch_body()
    headers = signed(committed.webhook_secret, body) | {"webhook-timestamp": "yesterday"}
    reply = await client.post("/webhooks/jobs", content=body, headers=headers)
    assert_refused(reply, 401, "invalid_signature")


async def test_a_tampered_body(client: httpx.AsyncClient, committed: Stack) -> None:
    body = dispatch_body()
    headers = signed(committed.webhook_secret, body)
    tampered = body.replace(b"sample_task", b"sample_tasK")
    reply = await client.post("/webhooks/jobs", content=tampered, headers=headers)
    assert_refused(reply, 401, "invalid_signature")


async def test_a_body_that_is_not_utf8(client: httpx.AsyncClient, committed: Stack) -> None:
    headers = signed(committed.webhook_secret, b"{}")
    reply = await client.post("/webhooks/jobs", content=b"\xff\xfe{}", headers=headers)
    assert_refused(reply, 401, "invalid_signature")


async def test_an_oversized_body_is_refused_from_its_length(client: httpx.AsyncClient) -> None:
    reply = await client.post("/webhooks/jobs", content=b"x" * (1024 * 1024 + 1))
    assert_refused(reply, 413, "payload_too_large")


async def test_an_oversized_chunked_body_is_cut_off(client: httpx.AsyncClient) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(40):
            yield b"x" * 64 * 1024

    reply = await client.post("/webhooks/jobs", content=chunks())
    assert_refused(reply, 413, "payload_too_large")


async def test_a_signed_body_that_is_not_an_event(
    client: httpx.AsyncClient, committed: Stack
) -> None:
    for body in (
        b'{"type": "jobs.explode"}',
        b"[1, 2]",
        b"not json",
        b'{"type": "jobs.dispatch", "jobs": []}',
    ):
        reply = await client.post(
            "/webhooks/jobs", content=body, headers=signed(committed.webhook_secret, body)
        )
        assert_refused(reply, 400, "invalid_payload")


async def test_a_signed_ping_is_answered(client: httpx.AsyncClient, committed: Stack) -> None:
    body = b'{"type": "jobs.ping"}'
    reply = await client.post(
        "/webhooks/jobs", content=body, headers=signed(committed.webhook_secret, body)
    )
    assert reply.status_code == 200
    assert reply.json() == {"pong": True}


async def test_a_valid_delivery_for_an_unknown_job_changes_nothing(
    client: httpx.AsyncClient, committed: Stack
) -> None:
    body = dispatch_body()
    reply = await client.post(
        "/webhooks/jobs", content=body, headers=signed(committed.webhook_secret, body)
    )
    assert reply.status_code == 202
    assert reply.json() == {"accepted": 1, "deferred": 0}


async def test_rotation_accepts_any_configured_secret(committed: Stack) -> None:
    settings = Settings(
        DATABASE_URL=committed.url,
        JOBHOOK_WEBHOOK_SECRETS=f"{OTHER_SECRET},{committed.webhook_secret}",
    )
    port = free_port()
    app = create_app(settings, configure_logging=False)
    async with (
        serve(settings, delivery_url=committed.admin_url, port=port, app=app) as served,
        httpx.AsyncClient(base_url=served.url) as http,
    ):
        for secret in (OTHER_SECRET, committed.webhook_secret):
            body = dispatch_body()
            reply = await http.post("/webhooks/jobs", content=body, headers=signed(secret, body))
            assert reply.status_code == 202, reply.text


async def test_the_answer_comes_before_the_job_runs(committed: Stack, app_stack: Served) -> None:
    # A job that blocks until the test says so: the webhook still answers 202 at once.
    job_id = insert_job(committed.url, "gated", {"key": "inline", "block_attempts": [1]})
    async with await psycopg.AsyncConnection.connect(committed.url, autocommit=True) as conn:
        async with asyncio.timeout(10):
            while True:
                cursor = await conn.execute("select status_code from net._http_response")
                if rows := await cursor.fetchall():
                    break
                await asyncio.sleep(0.02)
        cursor = await conn.execute("select status from public.jobs where id = %s", (job_id,))
        assert await cursor.fetchone() in {("pending",), ("processing",)}  # not finished
    assert rows == [(202,)]
    handlers_for_tests.gates[("inline", 1)].set()
    await wait_for_job(committed.url, job_id, finished)


async def test_a_secret_rotated_in_vault_is_followed_and_the_old_one_still_verifies(
    client: httpx.AsyncClient, committed: Stack
) -> None:
    old, new = committed.webhook_secret, vault.new_webhook_secret()
    with psycopg.connect(committed.url, autocommit=True) as conn:
        vault.write(conn, vault.WEBHOOK_SECRET, new)
    ping = json.dumps({"type": "jobs.ping"}).encode()
    rotated = await client.post("/webhooks/jobs", content=ping, headers=signed(new, ping))
    assert rotated.status_code == 200, rotated.text
    # Doorbells the database signed just before the rotation may still be on their way.
    late = await client.post("/webhooks/jobs", content=ping, headers=signed(old, ping))
    assert late.status_code == 200, late.text
    forged = await client.post(
        "/webhooks/jobs", content=ping, headers=signed(vault.new_webhook_secret(), ping)
    )
    assert_refused(forged, 401, "invalid_signature")


async def test_a_doorbell_that_rings_while_the_app_starts_waits_for_it(committed: Stack) -> None:
    # No signing secret in Vault yet: the app cannot verify until it has one.
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute("delete from vault.secrets where name = %s", (vault.WEBHOOK_SECRET,))
    settings = Settings(DATABASE_URL=committed.url)
    app = create_app(settings, job_registry=handlers_for_tests.registry, configure_logging=False)
    port = free_port()
    server = app_server(app, "127.0.0.1", port)
    serving = asyncio.create_task(server.serve())
    try:
        while not server.started:  # noqa: ASYNC110 - uvicorn says so by a flag only
            await asyncio.sleep(0.01)
        ping = json.dumps({"type": "jobs.ping"}).encode()
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            ringing = asyncio.create_task(
                http.post(
                    "/webhooks/jobs",
                    content=ping,
                    headers=signed(committed.webhook_secret, ping),
                    timeout=10,
                )
            )
            with psycopg.connect(committed.url, autocommit=True) as conn:
                vault.write(conn, vault.WEBHOOK_SECRET, committed.webhook_secret)
            reply = await ringing
        assert reply.status_code == 200, reply.text
    finally:
        server.should_exit = True
        await serving
