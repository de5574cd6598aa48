"""The hot queries keep using their indexes (EXPLAIN, on a table with realistic proportions).

The sweep is a PL/pgSQL function, so its statements are planned inside it; auto_explain with
log_nested_statements reports each of those plans to this session, which is what is checked.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import psycopg
import pytest

from tests.conftest import DEMO_USER, act_as_user

Conn = psycopg.Connection[tuple[Any, ...]]
PARTIAL_INDEXES = {"jobs_pending_run_at_idx", "jobs_processing_idx", "jobs_finished_idx"}


@pytest.fixture
def busy_table(admin_db: Conn) -> Conn:
    """30,000 finished jobs, 300 pending, 100 processing: most rows are history. As the
    superuser, who alone may load auto_explain (tests/conftest.py: admin_db)."""
    db = admin_db
    db.execute("update jobhook.settings set max_unfinished_per_user = 100000")
    db.execute(
        "insert into public.jobs (user_id, job_type, payload, run_at)"
        " select %s, 'sample_task', jsonb_build_object('n', n), now() + interval '1 day'"
        " from generate_series(1, 30400) n",
        (DEMO_USER,),
    )
    db.execute(
        "update public.jobs set status = 'completed', progress = 100, attempt = 1,"
        " started_at = now(), finished_at = now() - (random() * interval '20 days')"
        " where (payload ->> 'n')::int > 400"
    )
    db.execute(
        "update public.jobs set status = 'processing', attempt = 1, started_at = now(),"
        " lease_expires_at = now() + interval '1 minute' where (payload ->> 'n')::int <= 100"
    )
    db.execute("analyze public.jobs")
    return db


def nodes(plan: dict[str, Any]) -> Iterator[dict[str, Any]]:
    yield plan
    for child in plan.get("Plans", []):
        yield from nodes(child)


def scans_of_jobs(plan: dict[str, Any]) -> list[tuple[str, str | None]]:
    return [
        (node["Node Type"], node.get("Index Name"))
        for node in nodes(plan)
        if node.get("Relation Name") == "jobs" or node.get("Index Name", "").startswith("jobs_")
    ]


def nested_plans(conn: Conn, statement: str) -> list[dict[str, Any]]:
    """The plan of every statement `statement` runs, inside functions too (auto_explain)."""
    plans: list[dict[str, Any]] = []

    def collect(diag: psycopg.errors.Diagnostic) -> None:
        message = diag.message_primary or ""
        if message.startswith("duration:") and "{" in message:
            plans.append(json.loads(message[message.index("{") :])["Plan"])

    conn.add_notice_handler(collect)
    conn.execute("load 'auto_explain'")
    for setting, value in {
        "auto_explain.log_min_duration": "0",
        "auto_explain.log_nested_statements": "on",
        "auto_explain.log_format": "json",
        "client_min_messages": "log",
    }.items():
        conn.execute("select set_config(%s, %s, true)", (setting, value))
    conn.execute(statement)
    conn.execute("select set_config('client_min_messages', 'notice', true)")
    conn.remove_notice_handler(collect)
    return plans


def test_every_statement_of_the_sweep_scans_a_partial_index(busy_table: Conn) -> None:
    plans = nested_plans(busy_table, "select jobhook.sweep()")
    scans = [scan for plan in plans for scan in scans_of_jobs(plan)]
    assert scans, "auto_explain reported no plan touching public.jobs"
    assert not [s for s in scans if s[0] == "Seq Scan"], json.dumps(plans, indent=1)
    used = {index for _, index in scans if index}
    assert used >= PARTIAL_INDEXES, used


def test_claim_due_visits_users_through_the_pending_index_not_the_history(busy_table: Conn) -> None:
    # Make some of the pending jobs due, so the claim has rows to take.
    busy_table.execute(
        "update public.jobs set run_at = now() - interval '1 minute'"
        " where status = 'pending' and (payload ->> 'n')::int <= 150"
    )
    # Realistic proportions of users: 50 more, a due job each, and a cap to check.
    busy_table.execute(
        "with u as (insert into auth.users (id, email)"
        " select gen_random_uuid(), 'plan-' || n || '@example.com' from generate_series(1, 50) n"
        " returning id)"
        " insert into public.jobs (user_id, job_type, run_at)"
        " select id, 'sample_task', now() - interval '1 minute' from u"
    )
    busy_table.execute(
        "update jobhook.job_types set max_running_per_user = 5 where name = 'sample_task'"
    )
    busy_table.execute("analyze public.jobs")
    plans = nested_plans(
        busy_table, "select * from jobhook.claim_due(array['sample_task'], 20, 'plan-test')"
    )
    scans = [scan for plan in plans for scan in scans_of_jobs(plan)]
    assert scans, "auto_explain reported no plan touching public.jobs"
    assert not [s for s in scans if s[0] == "Seq Scan"], json.dumps(plans, indent=1)
    used = {index for _, index in scans if index}
    # Users are visited through the per-user index: a claim costs the users it visits, never a
    # walk of the type's backlog (jobs_pending_run_at_idx) or of its history.
    assert "jobs_pending_by_user_idx" in used, scans
    assert used <= {"jobs_pending_by_user_idx", "jobs_processing_by_user_idx", "jobs_pkey"}, scans


def test_a_users_list_newest_first_uses_its_index(busy_table: Conn) -> None:
    act_as_user(busy_table, DEMO_USER)
    row = busy_table.execute(
        "explain (format json) select id, status, progress from public.jobs"
        " order by created_at desc limit 20"
    ).fetchone()
    assert row is not None
    scans = scans_of_jobs(row[0][0]["Plan"])
    assert scans == [("Index Scan", "jobs_user_created_idx")], scans


@pytest.fixture
def quiet_table(admin_db: Conn) -> Conn:
    """A queue as ANALYZE last saw it: 300 jobs, due tomorrow, in a table of a few pages. As the
    superuser, for auto_explain."""
    db = admin_db
    db.execute("truncate public.jobs")  # rolled back with the test
    db.execute("update jobhook.settings set max_unfinished_per_user = 100000")
    db.execute(
        "insert into public.jobs (user_id, job_type, run_at)"
        " select %s, 'sample_task', now() + interval '1 day' from generate_series(1, 300)",
        (DEMO_USER,),
    )
    db.execute("analyze public.jobs")
    return db


def burst(db: Conn) -> None:
    """20,000 due jobs arrive and 2,000 of them start, which the statistics know nothing of."""
    db.execute(
        "insert into public.jobs (user_id, job_type)"
        " select %s, 'sample_task' from generate_series(1, 20000)",
        (DEMO_USER,),
    )
    db.execute(
        "select jobhook.claim(array(select id from public.jobs"
        " where status = 'pending' and run_at <= now() limit 2000), 'plan-test')"
    )


BY_ID = {
    "claim": "select * from jobhook.claim(array[%(pending)s::uuid], 'plan-test')",
    "complete_many": "select * from jobhook.complete_many(jsonb_build_array("
    "jsonb_build_object('id', %(running)s::uuid, 'attempt', 1, 'result', null)))",
    "heartbeat": "select * from jobhook.heartbeat(%(running)s::uuid, 1)",
    "fail": "select jobhook.fail(%(running)s::uuid, 1, 'boom', true)",
    "complete": "select jobhook.complete(%(running)s::uuid, 1, '{}')",
    "cancel": "select jobhook.cancel(%(pending)s::uuid)",
    "request_cancel": "select jobhook.request_cancel(%(pending)s::uuid)",
    "release": "select jobhook.release(%(running)s::uuid, 1)",
    # The owner asks, then the runner acknowledges that it stopped the attempt.
    "cancel_then_acknowledge": "select jobhook.cancel(%(running)s::uuid);"
    " select jobhook.cancel(%(running)s::uuid, 1)",
    "request_then_acknowledge_cancel": "select jobhook.request_cancel(%(running)s::uuid);"
    " select jobhook.acknowledge_cancel(%(running)s::uuid, 1)",
    # The path every attempt ends by, called with every kind of end at once.
    "finish_attempts": "select * from jobhook.finish_attempts(array["
    "row(%(running)s::uuid, 1, 'completed', null, null, null, null, null),"
    "row(%(pending)s::uuid, 1, 'failed', null, null, 'boom', true, 'error'),"
    "row(%(running)s::uuid, 1, 'released', null, null, 'released: test', null, 'released'),"
    "row(%(pending)s::uuid, 1, 'cancelled', null, null, null, null, null)"
    "]::jobhook.finished_attempt[])",
}


@pytest.mark.parametrize("function", sorted(BY_ID))
def test_what_names_its_jobs_by_id_finds_them_by_primary_key_whatever_the_statistics_say(
    quiet_table: Conn, function: str
) -> None:
    db = quiet_table
    # The runtime's pooled connections plan these calls while the queue is quiet, and PL/pgSQL
    # keeps a plan (by default from the sixth call on, these functions from the first): it must
    # still go by primary key after the burst.
    for _ in range(8):
        db.execute(sql_with(db, BY_ID[function], {"pending": uuid4(), "running": uuid4()}))
    burst(db)
    pending = [
        row[0]
        for row in db.execute(
            "select id from public.jobs where status = 'pending' and run_at <= now() limit 8"
        )
    ]
    running = [
        row[0]
        for row in db.execute("select id from public.jobs where status = 'processing' limit 8")
    ]
    scans = []
    for call in range(8):
        params = {"pending": pending[call], "running": running[call]}
        statement = sql_with(db, BY_ID[function], params)
        scans += [scan for plan in nested_plans(db, statement) for scan in scans_of_jobs(plan)]
    assert scans, "auto_explain reported no plan touching public.jobs"
    assert {index for _, index in scans if index} == {"jobs_pkey"}, scans
    assert not [s for s in scans if s[0] == "Seq Scan"], scans


def sql_with(conn: Conn, statement: str, params: dict[str, Any]) -> str:
    return psycopg.ClientCursor(conn).mogrify(statement, params)


def test_claim_due_for_one_owner_reads_its_jobs_by_index_whatever_the_statistics_say(
    quiet_table: Conn,
) -> None:
    db = quiet_table
    # Planned while the queue was quiet (a table of a few pages, where a sequential scan is
    # cheapest), kept for the connection's life, then called after the burst.
    for _ in range(8):
        db.execute("select * from jobhook.claim_due(array['sample_task'], 5, 'plan-test')")
    burst(db)
    scans = []
    for _ in range(4):
        plans = nested_plans(db, "select * from jobhook.claim_due(array['sample_task'], 5, 'p')")
        scans += [scan for plan in plans for scan in scans_of_jobs(plan)]
    assert scans, "auto_explain reported no plan touching public.jobs"
    assert not [s for s in scans if s[0] == "Seq Scan"], scans
    # The update finds the ids it was handed by primary key. (Which index oldest_due's probe
    # takes under stale statistics is another matter: the one of jobs_pending_run_at_idx it
    # may choose is walked from the oldest due job, and stops at the owner's first.)
    assert "jobs_pkey" in {index for _, index in scans}, scans


# Called once per claim, or once per user a claim visits. A SQL-language function with a SET
# clause (all of ours pin search_path) is never inlined and is parsed and planned again on every
# call: 0.1-0.2 ms each, which made a one-job claim_due cost 1.2-1.4 ms of server CPU.
HOT_PATH = (
    "jobhook.claim(uuid[], text)",
    "jobhook.claim_due(text[], integer, text)",
    "jobhook.next_waiting_user(text, uuid)",
    "jobhook.oldest_due(text, uuid, integer)",
    "jobhook.room_for_user(text, uuid)",
    "jobhook.complete_many(jsonb)",
    "jobhook.finish_attempts(jobhook.finished_attempt[])",
    "jobhook.heartbeat(uuid, integer, integer, text)",
)


@pytest.mark.parametrize("function", HOT_PATH)
def test_the_claims_and_completions_keep_their_plans(admin_db: Conn, function: str) -> None:
    row = admin_db.execute(
        "select l.lanname from pg_proc p join pg_language l on l.oid = p.prolang"
        " where p.oid = %s::regprocedure",
        (function,),
    ).fetchone()
    assert row == ("plpgsql",), f"{function} is {row}: planned again on every call"


def test_room_for_user_plans_under_the_claims_settings_whoever_calls_it_first(
    admin_db: Conn,
) -> None:
    # The sweep calls it as well as the claims, and PL/pgSQL keeps the plan its first caller's
    # settings made: a sequential scan planned under the sweep's would serve the claims after.
    row = admin_db.execute(
        "select proconfig from pg_proc"
        " where oid = 'jobhook.room_for_user(text, uuid)'::regprocedure"
    ).fetchone()
    assert row is not None
    assert {"enable_seqscan=off", "plan_cache_mode=force_generic_plan"} <= set(row[0]), row
