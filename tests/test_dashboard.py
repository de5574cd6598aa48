"""The dashboard over HTTP, and the SQL it stands on: who may sign in, what a session cookie
looks like, CSRF, the retry transition and its attempt fence, the role it reads as."""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx
import psycopg
import pytest

from jobhook.devstack.stack import Served
from tests.conftest import (
    DEMO_USER,
    AppFactory,
    Stack,
    act_as_user,
    finished,
    insert_job,
    user_token,
    wait_for_job,
)

API_KEY = "k" * 40
Conn = psycopg.Connection[tuple[Any, ...]]


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None, html
    return found.group(1)


@contextlib.asynccontextmanager
async def signed_in(served: Served, credential: str = API_KEY) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=served.url) as client:
        reply = await client.post("/dashboard/login", data={"credential": credential})
        assert reply.status_code == 303, reply.text
        yield client


@pytest.mark.commits
async def test_sign_in_refuses_all_but_operators(api_server: AppFactory) -> None:
    served = await api_server(JOBHOOK_API_KEY=API_KEY)
    async with httpx.AsyncClient(base_url=served.url) as client:
        assert (await client.get("/dashboard")).headers["location"] == "/dashboard/login"
        assert (await client.get("/dashboard/fragments/overview")).status_code == 401
        for credential in (
            "x" * 40,  # not the key
            user_token(),  # a user, but not an operator
            user_token(app_metadata={"jobhook_operator": "yes"}),  # not true
            user_token(role="service_role", app_metadata={"jobhook_operator": True}),
            user_token(exp=1, app_metadata={"jobhook_operator": True}),
        ):
            reply = await client.post("/dashboard/login", data={"credential": credential})
            assert reply.status_code == 401, credential
            assert "jobhook_session" not in reply.headers.get("set-cookie", "")
        refused = await client.post("/dashboard/login", data={"credential": user_token()})
        assert "not an operator" in refused.text

        token = user_token(app_metadata={"jobhook_operator": True}, email="op@example.com")
        reply = await client.post("/dashboard/login", data={"credential": token})
        assert reply.status_code == 303
        cookie = reply.headers["set-cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=strict" in cookie
        assert "Path=/dashboard" in cookie
        # Served on loopback: a browser would not send a Secure cookie over plain http.
        assert "Secure" not in cookie
        overview = await client.get("/dashboard")
        assert overview.status_code == 200
        assert f"user {DEMO_USER} (op@example.com)" in overview.text
        assert "default-src 'none'" in overview.headers["content-security-policy"]


@pytest.mark.commits
async def test_a_tampered_session_is_no_session(api_server: AppFactory) -> None:
    served = await api_server(JOBHOOK_API_KEY=API_KEY)
    async with signed_in(served) as client:
        value = client.cookies["jobhook_session"]
        body, signature = value.rsplit(".", 1)
        client.cookies.set("jobhook_session", f"{body}x.{signature}", path="/dashboard")
        assert (await client.get("/dashboard/fragments/overview")).status_code == 401


@pytest.mark.commits
async def test_retry_from_the_dashboard_keeps_the_attempt_and_records_who(
    api_server: AppFactory, committed: Stack
) -> None:
    served = await api_server(JOBHOOK_API_KEY=API_KEY)
    job_id = insert_job(committed.url, "refuses")
    failed = await wait_for_job(committed.url, job_id, finished)
    assert (failed["status"], failed["attempt"], failed["max_attempts"]) == ("failed", 1, 3)
    async with signed_in(served) as client:
        page = await client.get(f"/dashboard/jobs/{job_id}")
        assert "the input can never work" in page.text
        csrf = csrf_of(page.text)
        forged = await client.post(f"/dashboard/jobs/{job_id}/retry", data={"csrf": "x" * 43})
        assert forged.status_code == 403
        missing = await client.post(f"/dashboard/jobs/{job_id}/retry")
        assert missing.status_code == 403
        other_site = await client.post(
            f"/dashboard/jobs/{job_id}/retry",
            data={"csrf": csrf},
            headers={"Origin": "https://evil.example"},
        )
        assert other_site.status_code == 403
        assert (await wait_for_job(committed.url, job_id, finished))["status"] == "failed"

        retried = await client.post(f"/dashboard/jobs/{job_id}/retry", data={"csrf": csrf})
        assert retried.status_code == 303
        again = await wait_for_job(committed.url, job_id, lambda r: r["attempt"] == 2)
        again = await wait_for_job(committed.url, job_id, finished)
    # The attempt went on from 1 to 2; the budget was already there, so it stays.
    assert (again["status"], again["attempt"], again["max_attempts"]) == ("failed", 2, 3)
    assert [e["attempt"] for e in again["errors"]] == [1, 2]
    with psycopg.connect(committed.url) as conn:
        actions = conn.execute(
            "select actor, action, attempt from jobhook.operator_actions where job_id = %s",
            (job_id,),
        ).fetchall()
    assert actions == [("service key", "retry", 1)]


@pytest.mark.commits
async def test_bulk_retry_confirms_how_many_then_retries_them(
    api_server: AppFactory, committed: Stack
) -> None:
    served = await api_server(JOBHOOK_API_KEY=API_KEY)
    ids = [insert_job(committed.url, "refuses") for _ in range(3)]
    for job_id in ids:
        await wait_for_job(committed.url, job_id, finished)
    async with signed_in(served) as client:
        refused = await client.get("/dashboard/bulk", params={"action": "retry"})
        assert "needs the status filter" in refused.text
        confirm = await client.get(
            "/dashboard/bulk",
            params={"action": "retry", "status": "failed", "job_type": "refuses"},
        )
        assert "This will retry <strong>3</strong> job(s)" in confirm.text
        done = await client.post(
            "/dashboard/bulk?status=failed&job_type=refuses",
            data={"csrf": csrf_of(confirm.text), "action": "retry"},
        )
        assert done.status_code == 303
        shown = await client.get(done.headers["location"])
        assert '<div class="notice" id="notice">retry: 3 of 3 job(s)</div>' in shown.text
        # The message was for that one page; a link cannot put one there either.
        again = await client.get("/dashboard/jobs", params={"notice": "paste your key at evil"})
        assert "evil" not in again.text
    for job_id in ids:
        row = await wait_for_job(committed.url, job_id, lambda r: r["attempt"] == 2)
        assert row["max_attempts"] == 3


@pytest.mark.commits
async def test_bulk_cancel_of_waiting_jobs(api_server: AppFactory, committed: Stack) -> None:
    served = await api_server(JOBHOOK_API_KEY=API_KEY)
    ids = [
        insert_job(committed.url, "sample_task", run_at_sql="now() + interval '1 hour'")
        for _ in range(2)
    ]
    async with signed_in(served) as client:
        confirm = await client.get(
            "/dashboard/bulk", params={"action": "cancel", "status": "pending"}
        )
        assert "This will cancel <strong>2</strong> job(s)" in confirm.text
        await client.post(
            "/dashboard/bulk?status=pending",
            data={"csrf": csrf_of(confirm.text), "action": "cancel"},
        )
    for job_id in ids:
        row = await wait_for_job(committed.url, job_id, finished)
        assert row["status"] == "cancelled"


@pytest.mark.commits
async def test_sign_in_from_another_site_is_refused(api_server: AppFactory) -> None:
    served = await api_server(JOBHOOK_API_KEY=API_KEY)
    async with httpx.AsyncClient(base_url=served.url) as client:
        reply = await client.post(
            "/dashboard/login",
            data={"credential": API_KEY},
            headers={"Origin": "https://evil.example"},
        )
    assert reply.status_code == 403
    assert "jobhook_session" not in reply.headers.get("set-cookie", "")


def test_retry_raises_the_budget_clears_the_cancel_and_holds_the_fence(db: Conn) -> None:
    act_as_user(db, DEMO_USER)
    [(job_id,)] = db.execute(
        "insert into public.jobs (job_type) values ('one_shot') returning id"
    ).fetchall()
    db.execute("reset role")
    [(claimed,)] = db.execute(
        "select count(*) from jobhook.claim(array[%s]::uuid[], 'w1')", (job_id,)
    ).fetchall()
    assert claimed == 1
    db.execute("select jobhook.fail(%s, 1, 'boom', false, 'error')", (job_id,))
    [(retried,)] = db.execute(
        "select array_agg(r) from jobhook.retry(array[%s]::uuid[], 'ops@example') r", (job_id,)
    ).fetchall()
    assert retried == [job_id]
    row = db.execute(
        "select status::text, attempt, max_attempts, finished_at, dispatched_at"
        " from public.jobs where id = %s",
        (job_id,),
    ).fetchone()
    # one_shot allows one attempt; it spent it, so the retry makes room for a second.
    assert row == ("pending", 1, 2, None, None)
    # The old attempt's runner can write nothing once the job is claimed again.
    db.execute("select jobhook.claim(array[%s]::uuid[], 'w2')", (job_id,))
    [(stale,)] = db.execute(
        "select jobhook.complete(%s, 1, '{\"stale\": true}'::jsonb)", (job_id,)
    ).fetchall()
    assert stale is False
    # A cancelled job is retried without its cancel request, which would stop the claim.
    db.execute("select jobhook.cancel(%s)", (job_id,))
    db.execute("select jobhook.cancel(%s, 2)", (job_id,))
    db.execute("select jobhook.retry(array[%s]::uuid[], 'ops@example')", (job_id,))
    row = db.execute(
        "select status::text, attempt, max_attempts, cancel_requested_at"
        " from public.jobs where id = %s",
        (job_id,),
    ).fetchone()
    assert row == ("pending", 2, 3, None)
    # Neither a running nor a completed job is retried.
    db.execute("select jobhook.claim(array[%s]::uuid[], 'w3')", (job_id,))
    [(none,)] = db.execute(
        "select count(*) from jobhook.retry(array[%s]::uuid[], 'ops')", (job_id,)
    ).fetchall()
    assert none == 0
    actions = db.execute(
        "select action, attempt from jobhook.operator_actions where job_id = %s order by id",
        (job_id,),
    ).fetchall()
    assert actions == [("retry", 1), ("retry", 2)]


def test_the_operator_role_reads_every_job_and_writes_none(db: Conn) -> None:
    db.execute("update jobhook.settings set max_unfinished_per_user = 100000")
    act_as_user(db, DEMO_USER)
    db.execute("insert into public.jobs (job_type) values ('sample_task')")
    db.execute("reset role")
    db.execute("set local role jobhook_operator")
    [(seen,)] = db.execute("select count(*) from public.jobs").fetchall()
    assert seen >= 1
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("update public.jobs set progress = 1")
    db.rollback()
    db.execute("set local role jobhook_operator")
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("select * from vault.decrypted_secrets")
    db.rollback()
    db.execute("set local role jobhook_operator")
    [(names,)] = db.execute("select jobhook.vault_secrets_present()").fetchall()
    assert names == ["jobhook_webhook_secret", "jobhook_webhook_url"]
