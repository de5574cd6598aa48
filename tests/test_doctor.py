"""`jobhook doctor` names each fault injected into a live database, with its fix, and exits 1."""

from __future__ import annotations

import psycopg
import pytest
from typer.testing import CliRunner

from jobhook.cli.main import app
from jobhook.devstack.cluster import free_port
from tests.conftest import Stack

pytestmark = pytest.mark.commits

# Each fault: what injects it, what takes it back, and the line the doctor must print.
FAULTS = {
    "vault": (
        "delete from vault.secrets where name = 'jobhook_webhook_secret'",
        None,  # the committed fixture writes both secrets back
        "Vault secret(s) missing: jobhook_webhook_secret",
    ),
    # Planted with a function of its own: postgres, which does not own pg_net's table, takes the
    # trigger back the way the fix says, with its function.
    "queue_triggers": (
        "create function public.planted() returns trigger language plpgsql"
        " as $$ begin return new; end $$;"
        " create trigger planted after insert on net.http_request_queue"
        " for each row execute function public.planted()",
        "drop function public.planted() cascade",
        "triggers jobhook did not make: planted",
    ),
    "pg_net": (
        "insert into net._http_response (id, status_code, timed_out, error_msg)"
        " select n, null, true, 'Timeout of 10000 ms reached' from generate_series(1, 3) n",
        None,
        "3 of 3 doorbell(s) failed",
    ),
    "job_types": (
        "insert into jobhook.job_types (name) values ('nobody_handles_this')",
        None,
        "without a handler in this deployment: nobody_handles_this",
    ),
    "sweep": (
        "insert into cron.job_run_details (jobid, runid, database, username, command, status,"
        " return_message, start_time, end_time)"
        " select jobid, 1, 'postgres', 'postgres', 'select jobhook.sweep()', 'failed',"
        " 'ERROR: out of memory', now(), now() from cron.job where jobname = 'jobhook-sweep'",
        "delete from cron.job_run_details",
        "1 of the last 1 sweeps failed; last: ERROR: out of memory",
    ),
    "migrations": (
        "delete from supabase_migrations.schema_migrations"
        " where version = (select max(version) from supabase_migrations.schema_migrations)",
        None,  # put back below
        "migration(s) not applied: ",
    ),
}


@pytest.fixture
def doctor(committed: Stack, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", committed.url)
    monkeypatch.delenv("JOBHOOK_WEBHOOK_SECRETS", raising=False)
    from jobhook.config import get_settings

    get_settings.cache_clear()
    with psycopg.connect(committed.url, autocommit=True) as conn:
        # The test catalogue's one_shot has no handler among this checkout's: not this test's.
        conn.execute("delete from jobhook.job_types where name = 'one_shot'")
    return CliRunner()


def test_a_sound_set_up_has_no_fault(doctor: CliRunner) -> None:
    result = doctor.invoke(app, ["doctor"])
    assert result.exit_code == 0, result.output
    assert "no faults" in result.output
    lines = [line for line in result.output.splitlines() if line[:5] in ("ok   ", "warn ")]
    names = {line.split()[1] for line in lines}
    assert {"database", "migrations", "vault", "pg_net", "sweep", "job_types"} <= names
    # The tests pause the sweep: said, with the fix, but not a fault.
    assert "the sweep's schedule is inactive" in result.output


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_each_fault_is_named_with_its_fix(doctor: CliRunner, committed: Stack, fault: str) -> None:
    inject, take_back, expected = FAULTS[fault]
    with psycopg.connect(committed.url, autocommit=True) as conn:
        # The whole row, to put back as it was (statements included: the CLI reads them).
        removed = conn.execute(
            "select version, name, statements from supabase_migrations.schema_migrations"
            " order by version desc limit 1"
        ).fetchone()
        conn.execute(inject)
        try:
            result = doctor.invoke(app, ["doctor"])
        finally:
            if take_back:
                conn.execute(take_back)
            if fault == "migrations" and removed is not None:
                conn.execute(
                    "insert into supabase_migrations.schema_migrations (version, name, statements)"
                    " values (%s, %s, %s)",
                    removed,
                )
    assert result.exit_code == 1, result.output
    [line] = [line for line in result.output.splitlines() if line.startswith("FAULT")]
    assert line.split()[1] == fault, result.output
    assert expected in result.output, result.output
    assert "fix: " in result.output


def test_an_unreachable_database_is_a_fault() -> None:
    dead = f"postgresql://postgres:postgres@127.0.0.1:{free_port()}/postgres"
    result = CliRunner().invoke(app, ["doctor", "--database-url", dead])
    assert result.exit_code == 1
    assert "database unreachable" in result.output
