"""Coalesced doorbells: at a few jobs a second every insert rings at once; past
settings.max_doorbells_per_second inserts share doorbells, never waiting for one another; a job
no doorbell named is drained by the runner the ring reached, or rung for by dispatch_due a
second later; a rolled-back insert sends nothing."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

import psycopg
import pytest
from pydantic import BaseModel

from jobhook.context import JobContext
from jobhook.doorbell import DispatchedJob
from jobhook.executor import LocalExecutor
from jobhook.registry import Registry
from jobhook.runner import Runner
from jobhook.store import Store
from tests.conftest import DEMO_USER, Stack, finished, insert_on, queued_doorbells, wait_for_job

pytestmark = pytest.mark.commits


def _shared(conn: psycopg.Connection[Any]) -> int:
    row = conn.execute("select last_value, is_called from jobhook.shared_doorbells").fetchone()
    assert row is not None
    return int(row[0]) if row[1] else 0


@pytest.fixture
def conn(committed: Stack) -> Any:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        # As if no doorbell had rung for a while (the tests before this one rang theirs).
        conn.execute("update jobhook.locks set rung_at = null where name = 'doorbell'")
        conn.execute("delete from jobhook.drains")
        yield conn


def test_at_a_few_jobs_a_second_every_insert_rings_at_once(conn: psycopg.Connection[Any]) -> None:
    shared_before = _shared(conn)
    first = insert_on(conn)
    time.sleep(0.05)  # ten times the default pace's interval (200 a second)
    second = insert_on(conn)
    assert queued_doorbells(conn) == [[str(first)], [str(second)]]
    assert _shared(conn) == shared_before


def test_inserts_past_the_pace_share_doorbells(conn: psycopg.Connection[Any]) -> None:
    conn.execute("update jobhook.settings set max_doorbells_per_second = 2")
    shared_before = _shared(conn)
    began = time.monotonic()
    ids = [insert_on(conn) for _ in range(40)]
    elapsed = time.monotonic() - began
    rings = queued_doorbells(conn)
    # At most one doorbell per half second, the first at once.
    assert 1 <= len(rings) <= int(elapsed * 2) + 1
    assert rings[0] == [str(ids[0])]
    assert _shared(conn) - shared_before == len(ids) - len(rings)
    # Every job counts as announced: the sweep does not take them for lost doorbells.
    [(undelivered,)] = conn.execute(
        "select count(*) from public.jobs where dispatch_count = 0"
    ).fetchall()
    assert undelivered == 0


def test_an_insert_never_waits_for_the_one_that_holds_the_turn(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    shared_before = _shared(conn)
    with psycopg.connect(committed.url) as ringer:
        ringing = insert_on(ringer)  # takes the turn, and holds it until it commits
        # Any wait for the ringer's locks would end this insert with lock_timeout.
        conn.execute("set lock_timeout = '50ms'")
        shared = insert_on(conn)
        assert _shared(conn) == shared_before + 1
        ringer.commit()
    assert queued_doorbells(conn) == [[str(ringing)]]
    assert shared != ringing


def test_a_rolled_back_ringer_sends_nothing_and_dispatch_due_rings_for_the_rest(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(committed.url) as ringer:
        insert_on(ringer)
        shared = insert_on(conn)
        ringer.rollback()
    assert queued_doorbells(conn) == []
    # Not yet: dispatch_due rings for a shared job once it has waited a second unclaimed.
    assert conn.execute("select jobhook.dispatch_due()").fetchone() == (0,)
    assert queued_doorbells(conn) == []
    time.sleep(1.1)
    assert conn.execute("select jobhook.dispatch_due()").fetchone() == (0,)
    assert queued_doorbells(conn) == [[str(shared)]]
    # A ring for a job that waited is not a delivery lost: the count the sweep fails by stays.
    assert conn.execute(
        "select dispatch_count from public.jobs where id = %s", (shared,)
    ).fetchone() == (1,)
    # Not while the doorbells that inserts ring keep coming: their drains are at work.
    insert_on(conn)
    conn.execute("select jobhook.dispatch_due()")
    assert len(queued_doorbells(conn)) == 2


def test_a_turn_held_by_a_stalled_transaction_does_not_stop_dispatch_due(
    committed: Stack, conn: psycopg.Connection[Any]
) -> None:
    with psycopg.connect(committed.url) as stalled:
        insert_on(stalled)  # takes the turn and keeps it: the transaction stays open
        shared = insert_on(conn)
        time.sleep(1.1)
        conn.execute("select jobhook.dispatch_due()")
        assert queued_doorbells(conn) == [[str(shared)]]
        stalled.rollback()


class NoParams(BaseModel):
    pass


async def test_the_runner_a_ring_reaches_drains_the_jobs_that_shared_it(
    committed: Stack,
) -> None:
    registry = Registry()

    @registry.job("shared_work", params=NoParams)
    async def shared_work(params: NoParams, ctx: JobContext) -> None:
        await asyncio.sleep(0.01)

    with psycopg.connect(committed.url, autocommit=True) as conn:
        registry.sync(conn)
        conn.execute("update jobhook.settings set max_doorbells_per_second = 1")
        conn.execute("update jobhook.locks set rung_at = null where name = 'doorbell'")
        ids = [insert_on(conn, "shared_work") for _ in range(8)]
        [rung] = queued_doorbells(conn)
    assert rung == [str(ids[0])]

    # No delivery worker and no ticker here: only the drain can start the other seven.
    async with Store.open(committed.url) as store:
        executor = LocalExecutor(
            Runner(store, registry, "test-worker"), max_concurrency=3, max_per_type=3
        )
        try:
            assert await executor.submit([DispatchedJob(id=ids[0], job_type="shared_work")]) == []
            for job_id in ids:
                row = await wait_for_job(committed.url, job_id, finished, within=20)
                assert row["status"] == "completed"
        finally:
            await executor.aclose()


async def test_a_drain_runs_at_most_its_slots_at_once_and_stops_when_none_is_left(
    committed: Stack,
) -> None:
    registry = Registry()
    running = 0
    most = 0

    @registry.job("drained", params=NoParams)
    async def drained(params: NoParams, ctx: JobContext) -> None:
        nonlocal running, most
        running += 1
        most = max(most, running)
        await asyncio.sleep(0.02)
        running -= 1

    with psycopg.connect(committed.url, autocommit=True) as conn:
        registry.sync(conn)
        ids = [
            UUID(str(row[0]))
            for row in conn.execute(
                "insert into public.jobs (user_id, job_type)"
                " select %s, 'drained' from generate_series(1, 12) returning id",
                (DEMO_USER,),
            )
        ]
    async with Store.open(committed.url) as store:
        runner = Runner(store, registry, "test-worker")
        # More announced than fit: the rest is drained from the table, three at a time.
        outcomes = await runner.drain(["drained"], 3, ids[:5])
    assert [outcome.value for outcome in outcomes] == ["completed"] * 12
    assert most == 3


class CountingStore(Store):
    """The real store, counting its drains."""

    drains = 0

    async def claim_due(self, job_types: list[str], max_jobs: int, worker_id: str) -> Any:
        self.drains += 1
        return await super().claim_due(job_types, max_jobs, worker_id)


async def test_a_ring_that_shared_nothing_costs_no_drain(committed: Stack) -> None:
    registry = Registry()

    @registry.job("alone", params=NoParams)
    async def alone(params: NoParams, ctx: JobContext) -> None:
        pass

    with psycopg.connect(committed.url, autocommit=True) as conn:
        registry.sync(conn)
        conn.execute("update jobhook.locks set rung_at = null where name = 'doorbell'")
        first = insert_on(conn, "alone")
    async with CountingStore.open(committed.url) as store:
        assert isinstance(store, CountingStore)
        executor = LocalExecutor(
            Runner(store, registry, "test-worker"), max_concurrency=2, max_per_type=2
        )
        try:
            await executor.submit([DispatchedJob(id=first, job_type="alone")])
            await wait_for_job(committed.url, first, finished, within=20)
            drains_after_first = store.drains  # the first claim catches up with the count
            await asyncio.sleep(0.05)
            with psycopg.connect(committed.url, autocommit=True) as conn:
                second = insert_on(conn, "alone")
                assert queued_doorbells(conn)[-1] == [str(second)]  # it rang: nothing was shared
            await executor.submit([DispatchedJob(id=second, job_type="alone")])
            row = await wait_for_job(committed.url, second, finished, within=20)
            assert row["status"] == "completed"
        finally:
            await executor.aclose()
    assert store.drains == drains_after_first


@pytest.mark.parametrize(
    ("url", "problem", "curl_refuses"),
    [
        ("app.example.com/webhooks/jobs", "its scheme must be http or https", True),
        ("127.0.0.1:8000/webhooks/jobs", "its scheme must be http or https", True),
        ("https://app example.com/webhooks", "it must read scheme://host[:port][/path]", True),
        ("http://127.0.0.1:99999/webhooks/jobs", "its port must be at most 65535", True),
        # curl takes credentials in a URL; a doorbell has no use for them, and a log would
        # show them.
        ("https://user:secret@app.example.com/", "it must read scheme://host[:port][/path]", False),
    ],
)
def test_a_webhook_url_pg_net_would_refuse_never_fails_a_clients_insert(
    committed: Stack, conn: psycopg.Connection[Any], url: str, problem: str, curl_refuses: bool
) -> None:
    from jobhook import vault

    vault.write(conn, vault.WEBHOOK_URL, url)
    if curl_refuses:
        # pg_net itself refuses it where it is queued: in the calling statement.
        with pytest.raises(psycopg.errors.InternalError_, match="invalid URL"):
            conn.execute("select net.http_post(%s, '{}'::jsonb)", (url,))
    notices: list[str] = []
    conn.add_notice_handler(lambda diagnostic: notices.append(diagnostic.message_primary or ""))
    with psycopg.connect(committed.url, autocommit=True) as client:
        from tests.conftest import act_as_user

        with client.transaction():
            act_as_user(client, DEMO_USER)
            client.execute("set local role authenticated")
            client.add_notice_handler(
                lambda diagnostic: notices.append(diagnostic.message_primary or "")
            )
            client.execute("insert into public.jobs (job_type) values ('sample_task')")
    assert queued_doorbells(conn) == []
    [(status, dispatch_count)] = conn.execute(
        "select status::text, dispatch_count from public.jobs"
    ).fetchall()
    # Waiting, and not counted as delivered: once the URL is fixed, dispatch_due rings for it.
    assert (status, dispatch_count) == ("pending", 0)
    assert any(problem in notice for notice in notices), notices
    assert conn.execute("select jobhook.webhook_url_problem(%s)", (url,)).fetchone() == (
        next(n for n in notices if problem in n).split("cannot be used: ")[1].split(";")[0],
    )


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8000/webhooks/jobs",
        "https://jobhook-api.modal.run/webhooks/jobs",
        "https://[::1]:8443/webhooks/jobs?x=1",
        "HTTPS://App.Example.com",
        "http://jobhook_app:8000/webhooks/jobs",  # a container's name: curl takes "_"
    ],
)
def test_a_webhook_shaped_url_is_one_pg_net_takes(conn: psycopg.Connection[Any], url: str) -> None:
    assert conn.execute("select jobhook.webhook_url_problem(%s)", (url,)).fetchone() == (None,)
    conn.execute("select net.http_post(%s, '{}'::jsonb)", (url,))  # curl's parser takes it
    conn.execute("delete from net.http_request_queue")
