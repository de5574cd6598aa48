"""Health and readiness answer what an operator needs: up, and if not, why."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from functions.app import create_app
from jobhook.config import LOCAL_JWT_SECRET, Settings
from jobhook.devstack.cluster import free_port
from jobhook.devstack.stack import Served
from tests.conftest import LOCAL_STACK, AppFactory, Stack

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


@pytest.mark.e2e
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


OPERATOR_KEY = "o" * 40


def test_operator_details_are_closed_unless_opened() -> None:
    assert Settings(_env_file=None).public_operator_endpoints is False


async def test_without_the_key_ready_and_health_db_say_only_ok_or_unavailable(
    api_server: AppFactory, committed: Stack
) -> None:
    served = await api_server(
        JOBHOOK_PUBLIC_OPERATOR_ENDPOINTS="false", JOBHOOK_API_KEY=OPERATOR_KEY
    )
    key = {"X-API-Key": OPERATOR_KEY}
    async with httpx.AsyncClient(base_url=served.url) as client:
        assert (await client.get("/health")).json() == {"status": "ok"}
        assert (await client.get("/health/db")).json() == {"status": "ok"}
        assert (await client.get("/health/db", headers=key)).json()["database"] == "ok"
        ready = await client.get("/ready")
        assert (ready.status_code, ready.json()) == (200, {"status": "ok"})
        assert (await client.get("/ready", headers=key)).json()["dispatch"] == "configured"

        with psycopg.connect(committed.url, autocommit=True) as conn:
            conn.execute("delete from vault.secrets where name = 'jobhook_webhook_url'")
        ready = await client.get("/ready")
        assert (ready.status_code, ready.json()) == (503, {"status": "unavailable"})
        detailed = await client.get("/ready", headers=key)
        assert detailed.status_code == 503
        assert "jobhook_webhook_url" in detailed.json()["reason"]
        wrong = await client.get("/ready", headers={"X-API-Key": "x" * 40})
        assert wrong.status_code == 401
        assert "X-API-Key" in wrong.json()["error"]["message"]


async def test_metrics_need_the_key_unless_opened(api_server: AppFactory) -> None:
    closed = await api_server(
        JOBHOOK_PUBLIC_OPERATOR_ENDPOINTS="false", JOBHOOK_API_KEY=OPERATOR_KEY
    )
    async with httpx.AsyncClient(base_url=closed.url) as client:
        refused = await client.get("/metrics")
        assert refused.status_code == 401
        assert refused.json()["error"]["details"] == {"reason": "api_key"}
        assert "JOBHOOK_PUBLIC_OPERATOR_ENDPOINTS" in refused.json()["error"]["message"]
        wrong = await client.get("/metrics", headers={"X-API-Key": "x" * 40})
        assert wrong.status_code == 401
        scraped = await client.get("/metrics", headers={"X-API-Key": OPERATOR_KEY})
        assert scraped.status_code == 200
        assert "jobhook_http_requests_total" in scraped.text
    keyless = await api_server(JOBHOOK_PUBLIC_OPERATOR_ENDPOINTS="false")
    async with httpx.AsyncClient(base_url=keyless.url) as client:
        reply = await client.get("/metrics")
    assert reply.status_code == 403
    assert reply.json()["error"]["code"] == "operator_endpoints_closed"
    assert "JOBHOOK_API_KEY" in reply.json()["error"]["message"]
    opened = await api_server(JOBHOOK_PUBLIC_OPERATOR_ENDPOINTS="true")
    async with httpx.AsyncClient(base_url=opened.url) as client:
        assert (await client.get("/metrics")).status_code == 200


@pytest.mark.e2e
async def test_an_unreachable_database_is_told_only_to_operators() -> None:
    dead = f"postgresql://postgres:postgres@127.0.0.1:{free_port()}/postgres"
    settings = Settings(DATABASE_URL=dead, SUPABASE_JWT_SECRET=LOCAL_JWT_SECRET)
    app = create_app(settings, configure_logging=False)
    transport = httpx.ASGITransport(app=app)
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(transport=transport, base_url="http://app") as client,
    ):
        for path in ("/health/db", "/ready"):
            reply = await client.get(path)
            assert (reply.status_code, reply.json()) == (503, {"status": "unavailable"}), path
            assert "127.0.0.1" not in reply.text


async def test_ready_sees_vault_and_the_app_disagree_on_the_secret(
    committed: Stack, api_server: AppFactory
) -> None:
    from jobhook import vault

    served = await api_server(JOBHOOK_WEBHOOK_SECRETS=committed.webhook_secret)
    with psycopg.connect(committed.url, autocommit=True) as conn:
        vault.write(conn, vault.WEBHOOK_SECRET, vault.new_webhook_secret())
    async with httpx.AsyncClient(base_url=served.url) as client:
        reply = await client.get("/ready")
    assert reply.status_code == 503
    assert "does not accept" in reply.json()["reason"]


async def test_ready_follows_a_secret_rotated_in_vault(committed: Stack, app_stack: Served) -> None:
    from jobhook import vault

    with psycopg.connect(committed.url, autocommit=True) as conn:
        vault.write(conn, vault.WEBHOOK_SECRET, vault.new_webhook_secret())
    async with httpx.AsyncClient(base_url=app_stack.url) as client:
        reply = await client.get("/ready")
    # The app reads its secret from Vault: it takes the new one up, beside the old.
    assert reply.status_code == 200, reply.text


async def test_ready_names_a_trigger_planted_on_pg_nets_queue(
    committed: Stack, app_stack: Served
) -> None:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute(
            "create function public.planted() returns trigger language plpgsql"
            " as $$ begin return new; end $$"
        )
        conn.execute(
            "create trigger planted after insert on net.http_request_queue"
            " for each row execute function public.planted()"
        )
        try:
            async with httpx.AsyncClient(base_url=app_stack.url) as client:
                reply = await client.get("/ready")
        finally:
            # The fix the check names, as postgres: pg_net's table is supabase_admin's, so
            # DROP TRIGGER is refused, and the trigger goes with its function.
            with pytest.raises(psycopg.errors.InsufficientPrivilege, match="must be owner"):
                conn.execute("drop trigger planted on net.http_request_queue")
            conn.execute("drop function public.planted() cascade")
        gone = conn.execute(
            "select count(*) from pg_trigger where tgrelid = 'net.http_request_queue'::regclass"
            " and not tgisinternal"
        ).fetchone()
    assert reply.status_code == 503
    assert "planted" in reply.json()["reason"]
    assert "drop function <function> cascade" in reply.json()["reason"]
    assert gone == (0,)
