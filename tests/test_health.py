"""Health and readiness answer what an operator needs: up, and if not, why."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from functions.app import create_app
from jobhook.cluster import free_port
from jobhook.config import Settings
from jobhook.stack import Served
from tests.conftest import LOCAL_STACK, Stack

pytestmark = pytest.mark.commits


async def test_health_ready_and_db_when_all_is_well(app_stack: Served) -> None:
    async with httpx.AsyncClient(base_url=app_stack.url) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        assert (await client.get("/health/db")).json() == {"status": "ok", "database": "ok"}
        ready = await client.get("/ready")
    assert ready.status_code == 200
    assert ready.json() == {"status": "ok", "database": "ok", "dispatch": "configured"}


async def test_ready_names_the_missing_vault_secret(committed: Stack, app_stack: Served) -> None:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute("delete from vault.secrets where name = 'jobhook_webhook_url'")
    async with httpx.AsyncClient(base_url=app_stack.url) as client:
        reply = await client.get("/ready")
    assert reply.status_code == 503
    assert "jobhook_webhook_url" in reply.json()["reason"]
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute(
            "select vault.create_secret(%s, 'jobhook_webhook_url')", (committed.webhook_url,)
        )


async def test_an_unreachable_database_is_a_503_with_the_reason() -> None:
    dead = f"postgresql://postgres:postgres@127.0.0.1:{free_port()}/postgres"
    settings = Settings(DATABASE_URL=dead, **LOCAL_STACK)  # type: ignore[arg-type]
    app = create_app(settings, configure_logging=False)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        assert (await client.get("/health")).status_code == 200
        for path in ("/health/db", "/ready"):
            reply = await client.get(path)
            assert reply.status_code == 503, path
            assert reply.json()["reason"].startswith("database unreachable"), reply.json()
        # A delivery that cannot be verified yet is refused with 503, not accepted blindly.
        webhook = await client.post("/webhooks/jobs", content=b"{}")
        assert webhook.status_code == 503
