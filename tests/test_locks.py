"""Locks a client could take or hold cannot stop the sweep, another user's inserts or the claimer,
and the per-user quota holds under REPEATABLE READ."""

from __future__ import annotations

import asyncio
import time
from typing import Any
from uuid import UUID

import psycopg
import pytest

from tests.conftest import DEMO_USER, Stack, act_as_user

pytestmark = pytest.mark.commits

OTHER_USER = "00000000-0000-4000-8000-0000000000c1"


def client(url: str, user_id: str = DEMO_USER) -> psycopg.Connection[Any]:
    conn = psycopg.connect(url)
    act_as_user(conn, user_id)
    return conn


def test_advisory_locks_a_client_takes_stop_neither_the_sweep_nor_inserts(
    committed: Stack,
) -> None:
    # The keys jobhook once serialized on: any role may take an advisory lock.
    with client(committed.url) as attacker:
        attacker.execute(
            "select pg_advisory_lock(hashtext('jobhook.sweep')),"
            " pg_advisory_lock(hashtextextended('jobhook.quota:' || %s, 0))",
            (DEMO_USER,),
        )
        with psycopg.connect(committed.url, autocommit=True) as ops:
            ops.execute("set statement_timeout = '3s'")
            [(summary,)] = ops.execute("select jobhook.sweep()").fetchall()
        assert "skipped" not in summary
        with client(committed.url) as user:
            user.execute("set local statement_timeout = '3s'")
            user.execute("insert into public.jobs (job_type) values ('sample_task')")
            user.commit()


def test_the_quota_holds_under_repeatable_read(committed: Stack) -> None:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute("update jobhook.settings set max_unfinished_per_user = 3")
    # Six transactions take their snapshots before any of them inserts, so none can see the
    # others' jobs; then they insert and commit in turn.
    sessions = [psycopg.connect(committed.url) for _ in range(6)]
    outcomes = []
    try:
        for conn in sessions:
            conn.execute("set transaction isolation level repeatable read")
            act_as_user(conn, DEMO_USER)
            conn.execute("select count(*) from public.jobs").fetchone()
        for conn in sessions:
            try:
                conn.execute("insert into public.jobs (job_type) values ('sample_task')")
                conn.commit()
                outcomes.append("inserted")
            except psycopg.errors.SerializationFailure:
                conn.rollback()
                outcomes.append("retry")
    finally:
        for conn in sessions:
            conn.close()
    with psycopg.connect(committed.url) as conn:
        [(jobs,)] = conn.execute("select count(*) from public.jobs").fetchall()
    assert jobs <= 3, outcomes
    assert outcomes[0] == "inserted"
    assert "retry" in outcomes


def test_a_client_holding_its_own_row_locked_does_not_stall_the_claimer(
    committed: Stack,
) -> None:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        held, free = (
            UUID(str(row[0]))
            for row in conn.execute(
                "insert into public.jobs (user_id, job_type)"
                " select %s, 'sample_task' from generate_series(1, 2) returning id",
                (DEMO_USER,),
            )
        )
    with client(committed.url) as owner:
        # The owner may lock its own row: it holds UPDATE on cancel_requested_at.
        owner.execute("select id from public.jobs where id = %s for update", (held,))
        with psycopg.connect(committed.url, autocommit=True) as runner:
            runner.execute("set statement_timeout = '3s'")
            claimed = [
                row[0]
                for row in runner.execute(
                    "select id from jobhook.claim(%s::uuid[], 'test')", ([held, free],)
                )
            ]
    assert claimed == [free]
    with psycopg.connect(committed.url) as conn:
        [(status,)] = conn.execute(
            "select status::text from public.jobs where id = %s", (held,)
        ).fetchall()
    assert status == "pending"  # skipped, for a later claim


async def test_a_runtime_call_waits_for_a_held_lock_no_longer_than_its_lock_timeout(
    committed: Stack,
) -> None:
    from jobhook.store import Limits, Store

    with psycopg.connect(committed.url, autocommit=True) as conn:
        [(job_id,)] = conn.execute(
            "insert into public.jobs (user_id, job_type) values (%s, 'sample_task') returning id",
            (DEMO_USER,),
        ).fetchall()
    async with Store.open(
        committed.url, min_size=1, max_size=1, limits=Limits(lock_timeout_ms=200)
    ) as store:
        [claimed] = await store.claim([job_id], "test")
        with client(committed.url) as owner:
            owner.execute("select id from public.jobs where id = %s for update", (job_id,))
            # Without a lock timeout the heartbeat would wait as long as the owner holds on.
            async with asyncio.timeout(5):
                with pytest.raises(psycopg.errors.LockNotAvailable):
                    await store.heartbeat(claimed)
        # The connection went back to the pool clean, and the next call goes through.
        assert await store.heartbeat(claimed) is not None


async def test_the_api_and_the_runner_do_not_share_their_connections(
    committed: Stack, api_server: Any
) -> None:
    import httpx

    from tests.conftest import finished, insert_job, user_token, wait_for_job

    served = await api_server(JOBHOOK_API_POOL_SIZE="2", JOBHOOK_LOCK_TIMEOUT_MS="4000")
    held = insert_job(committed.url, "sample_task", {"steps": 1, "step_seconds": 30})
    await wait_for_job(committed.url, held, lambda row: row["status"] == "processing")
    headers = {"Authorization": f"Bearer {user_token()}"}
    with client(committed.url) as owner:
        owner.execute("select id from public.jobs where id = %s for update", (held,))
        async with httpx.AsyncClient(base_url=served.url, headers=headers, timeout=30) as http:
            # Three cancels wait on the lock: every connection of the API's pool is taken.
            cancels = [asyncio.create_task(http.post(f"/jobs/{held}/cancel")) for _ in range(3)]
            job = insert_job(committed.url, "sample_task", {"steps": 1, "step_seconds": 0})
            row = await wait_for_job(committed.url, job, finished, within=3)
            assert row["status"] == "completed"  # the runner had connections of its own
            replies = await asyncio.gather(*cancels)
    # Each gave up at its lock timeout with an answer that says so.
    assert [r.status_code for r in replies] == [503, 503, 503]
    assert {r.json()["error"]["code"] for r in replies} == {"database_busy"}


def test_two_claims_at_once_keep_a_users_running_cap(committed: Stack) -> None:
    import threading

    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute(
            "update jobhook.job_types set max_running_per_user = 1 where name = 'sample_task'"
        )
        first, second = (
            row[0]
            for row in conn.execute(
                "insert into public.jobs (user_id, job_type)"
                " select %s, 'sample_task' from generate_series(1, 2) returning id",
                (DEMO_USER,),
            )
        )
    claimed: list[Any] = []
    with psycopg.connect(committed.url) as one:
        assert (
            len(one.execute("select * from jobhook.claim(%s::uuid[], 'a')", ([first],)).fetchall())
            == 1
        )

        def other_claim() -> None:
            with psycopg.connect(committed.url, autocommit=True) as two:
                claimed.extend(
                    two.execute("select id from jobhook.claim(%s::uuid[], 'b')", ([second],))
                )

        racer = threading.Thread(target=other_claim)
        racer.start()
        # It waits for the first claim's (type, user) row, in a lock wait.
        with psycopg.connect(committed.url, autocommit=True) as watcher:
            deadline = time.monotonic() + 10
            while watcher.execute(
                "select count(*) from pg_stat_activity where wait_event_type = 'Lock'"
                " and query like '%jobhook.claim%'"
            ).fetchone() != (1,):
                assert time.monotonic() < deadline, "the second claim never waited"
        one.commit()
    racer.join(10)
    assert claimed == []
    with psycopg.connect(committed.url) as conn:
        [(running,)] = conn.execute(
            "select count(*) from public.jobs where status = 'processing'"
        ).fetchall()
    assert running == 1
