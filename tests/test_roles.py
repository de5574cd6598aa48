"""The dev stack's roles are hosted Supabase's: `postgres`, which the app and the migrations use,
is not a superuser; `supabase_admin` is, and owns what the platform installs.

Each expectation names the upstream source it mirrors (supabase/postgres unless said otherwise),
so that a migration or function hosted would refuse is refused here first.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobhook.devstack import cluster as cluster_module
from jobhook.devstack import migrations
from jobhook.devstack.cluster import Cluster, ClusterError, free_port
from tests.conftest import Stack

pytestmark = pytest.mark.integration

Conn = psycopg.Connection[tuple[Any, ...]]


@pytest.fixture
def admin(test_db: Stack) -> Iterator[Conn]:
    """The superuser, inside a transaction rolled back after the test."""
    with psycopg.connect(test_db.admin_url) as conn:
        try:
            yield conn
        finally:
            conn.rollback()


def attributes(conn: Conn, role: str) -> dict[str, Any]:
    row = conn.execute(
        "select rolsuper, rolcreatedb, rolcreaterole, rolcanlogin, rolreplication, rolbypassrls"
        " from pg_roles where rolname = %s",
        (role,),
    ).fetchone()
    assert row is not None, f"no role {role}"
    names = ("superuser", "createdb", "createrole", "login", "replication", "bypassrls")
    return dict(zip(names, row, strict=True))


def test_postgres_is_demoted_as_on_hosted(db: Conn) -> None:
    # migrations/db/migrations/10000000000000_demote-postgres.sql:17:
    # NOSUPERUSER CREATEDB CREATEROLE LOGIN REPLICATION BYPASSRLS.
    assert db.execute("select current_user").fetchone() == ("postgres",)
    assert attributes(db, "postgres") == {
        "superuser": False,
        "createdb": True,
        "createrole": True,
        "login": True,
        "replication": True,
        "bypassrls": True,
    }
    # What hosted gives it in place of superuser (20230201083204, 20230306081037, 20240606060239).
    for granted in ("anon", "authenticated", "service_role", "pg_monitor", "pg_read_all_data"):
        assert db.execute("select pg_has_role('postgres', %s, 'member')", (granted,)).fetchone()
    assert db.execute(
        "select has_function_privilege('postgres', 'pg_catalog.pg_reload_conf()', 'execute')"
    ).fetchone() == (True,)
    assert db.execute(
        "select pg_catalog.pg_get_userbyid(datdba) from pg_database where datname = 'postgres'"
    ).fetchone() == ("postgres",)


def test_supabase_admin_is_the_bootstrap_superuser(admin: Conn) -> None:
    # Dockerfile-15:209 (POSTGRES_USER=supabase_admin);
    # init-scripts/00000000000000-initial-schema.sql:8.
    assert attributes(admin, "supabase_admin") == {
        "superuser": True,
        "createdb": True,
        "createrole": True,
        "login": True,
        "replication": True,
        "bypassrls": True,
    }
    # The bootstrap superuser is the role initdb made, oid 10.
    assert admin.execute("select 10::regrole::text").fetchone() == ("supabase_admin",)


def test_supabase_admin_owns_the_extensions_and_vault(db: Conn) -> None:
    # supautils creates a privileged extension as supautils.privileged_extensions_superuser
    # (supabase/supautils src/supautils.c:611-651; supautils.conf.j2: 'supabase_admin').
    owners: dict[str, str] = dict(
        db.execute("select extname, extowner::regrole::text from pg_extension").fetchall()
    )
    for extension in ("pgcrypto", "pg_net", "pg_jsonschema", "supabase_vault", "pg_cron"):
        assert owners[extension] == "supabase_admin", extension
    schemas: dict[str, str] = dict(
        db.execute(
            "select nspname, nspowner::regrole::text from pg_namespace"
            " where nspname in ('vault', 'net', 'cron', 'auth', 'extensions', 'public')"
        ).fetchall()
    )
    assert schemas == {
        "vault": "supabase_admin",
        "net": "supabase_admin",
        "cron": "supabase_admin",
        "auth": "supabase_admin",  # init-scripts/00000000000001-auth-schema.sql:3
        # Made by the image's set-up while it ran as postgres (initial-schema.sql:18).
        "extensions": "postgres",
        "public": "pg_database_owner",
    }
    tables: dict[str, str] = dict(
        db.execute(
            "select c.oid::regclass::text, c.relowner::regrole::text from pg_class c"
            " where c.oid in ('vault.secrets'::regclass, 'net.http_request_queue'::regclass,"
            " 'cron.job'::regclass, 'auth.users'::regclass)"
        ).fetchall()
    )
    assert tables == {
        "vault.secrets": "supabase_admin",
        "net.http_request_queue": "supabase_admin",
        "cron.job": "supabase_admin",
        "auth.users": "supabase_auth_admin",  # auth-schema.sql:117
    }


def test_the_migrations_ran_as_postgres(db: Conn) -> None:
    # On hosted, `supabase db push` connects as postgres: what the migrations create is its.
    owners = db.execute(
        "select distinct pg_catalog.pg_get_userbyid(c.relowner) from pg_class c"
        " where c.relnamespace in ('public'::regnamespace, 'jobhook'::regnamespace)"
    ).fetchall()
    assert owners == [("postgres",)]
    functions: dict[str, str] = dict(
        db.execute(
            "select p.oid::regprocedure::text, pg_catalog.pg_get_userbyid(p.proowner)"
            " from pg_proc p where p.pronamespace = 'jobhook'::regnamespace"
        ).fetchall()
    )
    # jobhook.ring is handed to jobhook_doorbell by its migration; every other is postgres's.
    assert functions.pop("jobhook.ring(text,jsonb,jsonb,integer)") == "jobhook_doorbell"
    assert set(functions.values()) == {"postgres"}
    assert db.execute(
        "select nspowner::regrole::text from pg_namespace where nspname = 'jobhook'"
    ).fetchone() == ("postgres",)
    assert db.execute(
        "select username from cron.job where jobname = 'jobhook-sweep'"
    ).fetchone() == ("postgres",)
    history = db.execute(
        "select relowner::regrole::text from pg_class"
        " where oid = 'supabase_migrations.schema_migrations'::regclass"
    ).fetchone()
    assert history == ("postgres",)


@pytest.mark.parametrize(
    ("statement", "refusal"),
    [
        # file_fdw is left out of supautils.privileged_extensions ("may be unsafe").
        ("create extension file_fdw", "permission denied to create extension"),
        # supautils.reserved_roles; PostgreSQL itself keeps superusers from CREATEROLE.
        ("alter role supabase_admin set work_mem = '8MB'", "must be superuser"),
        ("alter role postgres superuser", "must be superuser"),
        # Vault: postgres may read and delete secrets (supabase_vault/after-create.sql:1-3),
        # never write the table, nor read the root key or the file it lives in.
        ("insert into vault.secrets (secret) values ('x')", "permission denied for table secrets"),
        ("select vault._root_key()", "permission denied for function _root_key"),
        ("select pg_read_file('vault_root_key')", "permission denied for function pg_read_file"),
        # pg_cron: SELECT only on cron.job (pg_cron/after-create.sql); jobs change through
        # cron.schedule and friends.
        ("update cron.job set active = false", "permission denied for table job"),
        # pg_net's tables are supabase_admin's: only their owner changes or drops triggers.
        (
            "alter table net.http_request_queue disable trigger all",
            "must be owner of table http_request_queue",
        ),
        ("drop extension pg_net", "must be owner of extension pg_net"),
    ],
)
def test_what_hosted_refuses_postgres_is_refused(db: Conn, statement: str, refusal: str) -> None:
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match=refusal):
        db.execute(statement)


def test_cluster_settings_are_the_platforms(test_db: Stack) -> None:
    # PostgreSQL 15 lets only a superuser, or a role granted ALTER SYSTEM on the parameter
    # (hosted grants postgres none), change the cluster's settings. ALTER SYSTEM runs outside
    # a transaction, so outside a migration too.
    refused = pytest.raises(
        psycopg.errors.InsufficientPrivilege, match="permission denied to set parameter"
    )
    with psycopg.connect(test_db.url, autocommit=True) as conn, refused:
        conn.execute("alter system set pg_net.batch_size = 10")


def test_postgres_cannot_end_the_superusers_sessions(db: Conn, admin: Conn) -> None:
    # pg_signal_backend (granted to postgres on hosted) stops at superusers' backends.
    admin_pid = admin.execute("select pg_backend_pid()").fetchone()
    assert admin_pid is not None
    with pytest.raises(psycopg.errors.InsufficientPrivilege, match="superuser"):
        db.execute("select pg_terminate_backend(%s)", admin_pid)


def test_a_migration_that_needs_a_superuser_fails_locally(test_db: Stack, tmp_path: Path) -> None:
    # An extension supautils does not list is refused to postgres on hosted; here too, and the
    # runner records nothing of the failed migration.
    (tmp_path / "29991231000000_read_server_files.sql").write_text(
        "create extension if not exists file_fdw;\n"
    )
    with psycopg.connect(test_db.url, autocommit=True) as conn:
        with pytest.raises(
            migrations.MigrationError, match="permission denied to create extension"
        ):
            migrations.apply(conn, tmp_path)
        assert "29991231000000" not in migrations.applied_versions(conn)


def test_the_api_roles_grants_are_hosted_ones(db: Conn) -> None:
    # initial-schema.sql:34, 40 (public, extensions); auth-schema.sql:109 (auth); the pg_net
    # event trigger (post-setup.sql:69) (net); supabase_vault/after-create.sql:6-8 (vault).
    usage = {
        (role, schema): db.execute(
            "select has_schema_privilege(%s, %s, 'usage')", (role, schema)
        ).fetchone()
        == (True,)
        for role in ("anon", "authenticated", "service_role")
        for schema in ("public", "extensions", "auth", "net", "vault", "jobhook")
    }
    for role in ("anon", "authenticated", "service_role"):
        for schema in ("public", "extensions", "auth", "net"):
            assert usage[role, schema], (role, schema)
    assert usage["service_role", "vault"]
    assert not usage["anon", "vault"]
    assert not usage["authenticated", "vault"]
    # Vault's secrets stay out of clients' reach.
    for role in ("anon", "authenticated"):
        assert db.execute(
            "select has_table_privilege(%s, 'vault.decrypted_secrets', 'select')", (role,)
        ).fetchone() == (False,)
    # What postgres creates in public is granted to the API roles (initial-schema.sql:35-37):
    # RLS, not a missing grant, keeps clients to their rows.
    assert db.execute(
        "select has_table_privilege('authenticated', 'public.jobs', 'select')"
    ).fetchone() == (True,)


def test_a_data_dir_from_before_the_role_model_says_to_reset(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    old = Cluster(Path(tempfile.mkdtemp(prefix="jobhook-old-roles-")), port=free_port())
    try:
        # The data dir as jobhook made it before: initdb's superuser was postgres.
        with monkeypatch.context() as patch:
            patch.setattr(cluster_module, "SUPERUSER", "postgres")
            old.init()
        with pytest.raises(ClusterError, match="`jobhook reset`"):
            old.start()
        # Refused before anything used it, the server it started is stopped again.
        assert not old.running()
    finally:
        old.destroy()
