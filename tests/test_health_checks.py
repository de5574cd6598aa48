"""jobhook.health judges a live database: each fault injected is named, with its fix."""

from __future__ import annotations

from collections.abc import AsyncIterator

import psycopg
import pytest

from jobhook import health
from jobhook.store import Store
from tests.conftest import TEST_JOB_TYPES, Stack

pytestmark = pytest.mark.commits

HANDLED = frozenset(name for name, *_ in TEST_JOB_TYPES)


@pytest.fixture
async def store(committed: Stack) -> AsyncIterator[Store]:
    async with Store.open(committed.url, min_size=1, max_size=2) as opened:
        yield opened


def by_name(report: health.Report) -> dict[str, health.Check]:
    return {check.name: check for check in report.checks}


async def test_a_sound_database_has_no_fault_and_reads_no_secret(
    store: Store, committed: Stack
) -> None:
    expected = health.Expectations(
        handled=HANDLED,
        secrets=(committed.webhook_secret,),
        migrations=health.migration_versions(health.MIGRATIONS),
    )
    report = await health.check(store, expected)
    assert report.faults == [], report.faults
    assert report.not_ready is None
    checks = by_name(report)
    assert checks["signing_secret"].found == "the app verifies what the database signs"
    assert checks["migrations"].found == "applied"
    # The sweep is paused in the tests: a warning, not a fault.
    assert checks["sweep"].severity is health.Severity.WARNING
    assert "inactive" in checks["sweep"].found


async def test_each_injected_fault_is_named_with_its_fix(store: Store, committed: Stack) -> None:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute("delete from vault.secrets where name = 'jobhook_webhook_url'")
        conn.execute(
            "insert into net._http_response (id, status_code, timed_out, error_msg)"
            " values (1, null, true, 'Timeout of 10000 ms reached'), (2, 503, false, null)"
        )
        conn.execute("insert into jobhook.job_types (name) values ('orphan_type')")
        conn.execute(
            "insert into cron.job_run_details (jobid, runid, database, username, command, status,"
            " return_message, start_time, end_time)"
            " select jobid, 1, 'postgres', 'postgres', 'select jobhook.sweep()', 'failed',"
            " 'ERROR: boom', now(), now() from cron.job where jobname = 'jobhook-sweep'"
        )
    try:
        expected = health.Expectations(
            handled=HANDLED,
            secrets=("whsec_" + "A" * 43,),
            migrations=(*health.migration_versions(health.MIGRATIONS), "29991231000000"),
        )
        report = await health.check(store, expected)
    finally:
        with psycopg.connect(committed.url, autocommit=True) as conn:
            conn.execute("delete from cron.job_run_details")
    checks = by_name(report)
    faulty = {c.name for c in report.faults}
    assert faulty == {"migrations", "vault", "signing_secret", "pg_net", "sweep", "job_types"}
    assert "29991231000000" in checks["migrations"].found
    assert "jobhook_webhook_url" in checks["vault"].found
    assert "2 of 2 doorbell(s) failed" in checks["pg_net"].found
    assert "1 timed out" in checks["pg_net"].found
    assert "ERROR: boom" in checks["sweep"].found
    assert "orphan_type" in checks["job_types"].found
    assert all(c.fix for c in report.faults)
    # /ready names the first fault that stops dispatching, not the panel's other problems.
    assert report.not_ready is not None
    assert report.not_ready.startswith("migration(s) not applied: 29991231000000")


async def test_an_unreachable_database_is_one_fault() -> None:
    from jobhook.devstack.cluster import free_port

    dead = f"postgresql://postgres:postgres@127.0.0.1:{free_port()}/postgres"
    async with Store.open(dead, min_size=0, max_size=1) as store:
        report = await health.check(store, health.Expectations(), acquire_within=1)
    [check] = report.checks
    assert check.name == "database"
    assert report.not_ready is not None
    assert report.not_ready.startswith("database unreachable")


def test_every_function_the_queries_call_is_looked_for() -> None:
    called = health.called_functions()
    assert {"claim", "sweep", "retry", "vault_secrets_present"} <= set(called)


async def test_a_webhook_url_pg_net_would_refuse_is_named_without_the_url(
    store: Store, committed: Stack
) -> None:
    from jobhook import vault

    with psycopg.connect(committed.url, autocommit=True) as conn:
        vault.write(conn, vault.WEBHOOK_URL, "secret-host.internal:8000/webhooks/jobs")
    report = await health.check(store, health.Expectations(handled=HANDLED))
    check = by_name(report)["vault"]
    assert check.severity is health.Severity.FAULT
    assert check.found == (
        "jobhook_webhook_url cannot be used: its scheme must be http or https;"
        " jobs cannot be dispatched"
    )
    assert "secret-host" not in check.found
    assert "vault.update_secret" in (check.fix or "")
    assert report.not_ready is not None
    assert report.not_ready.startswith(check.found)
