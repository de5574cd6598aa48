"""The dev stack's stand-ins behave as the Supabase pieces they mirror (pg_net, Vault, auth)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
import pytest

from jobhook import vault
from tests.conftest import DEMO_USER, Stack, act_as_user

Conn = psycopg.Connection[tuple[Any, ...]]


def queued(db: Conn) -> tuple[Any, ...]:
    row = db.execute(
        "select method, url, headers, body, timeout_milliseconds from net.http_request_queue"
        " order by id desc limit 1"
    ).fetchone()
    assert row is not None
    return row


def test_http_post_defaults_as_pg_net(db: Conn) -> None:
    db.execute("select net.http_post('http://127.0.0.1:9/x')")
    method, url, headers, body, timeout = queued(db)
    assert (method, url, headers, body, timeout) == (
        "POST",
        "http://127.0.0.1:9/x",
        {"Content-Type": "application/json"},
        b"{}",
        5000,
    )


def test_http_post_adds_content_type_when_headers_omit_it(db: Conn) -> None:
    db.execute("""select net.http_post('http://h/x', '{"b": 1}', headers => '{"X-A": "1"}')""")
    assert queued(db)[2] == {"X-A": "1", "Content-Type": "application/json"}


def test_http_post_refuses_another_content_type(db: Conn) -> None:
    with pytest.raises(
        psycopg.errors.RaiseException, match='Content-Type header must be "application/json"'
    ):
        db.execute(
            """select net.http_post('http://h/x', '{}',
                 headers => '{"content-type": "application/json; charset=utf-8"}')"""
        )


def test_http_post_sends_the_jsonb_text_of_the_body(db: Conn) -> None:
    # jsonb's canonical text: keys reordered (shorter first), ": " and ", " separators.
    db.execute("""select net.http_post('http://h/x', '{"longer": 1, "a": "é"}')""")
    assert queued(db)[3] == '{"a": "é", "longer": 1}'.encode()


def test_params_are_url_encoded(db: Conn) -> None:
    db.execute("""select net.http_get('http://h/x?k=1', '{"q": "a b/é&"}')""")
    assert queued(db)[1] == "http://h/x?k=1&q=a%20b%2F%C3%A9%26"


def test_clients_may_call_http_post_as_on_supabase(db: Conn) -> None:
    act_as_user(db, DEMO_USER)
    db.execute("select net.http_post('http://h/x')")


def test_vault_round_trip_encrypts_at_rest(db: Conn) -> None:
    vault.write(db, "probe", "s3cret-value")
    stored = db.execute("select secret from vault.secrets where name = 'probe'").fetchone()
    assert stored is not None
    assert "s3cret" not in stored[0]
    assert vault.read(db, "probe") == "s3cret-value"
    vault.write(db, "probe", "rotated")
    assert vault.read(db, "probe") == "rotated"
    assert vault.ensure(db, "probe", "ignored") == "rotated"


def test_vault_names_are_unique(db: Conn) -> None:
    db.execute("select vault.create_secret('one', 'dup')")
    with pytest.raises(psycopg.errors.UniqueViolation):
        db.execute("select vault.create_secret('two', 'dup')")


def test_clients_cannot_read_vault(db: Conn) -> None:
    act_as_user(db, DEMO_USER)
    with pytest.raises(psycopg.errors.InsufficientPrivilege):
        db.execute("select decrypted_secret from vault.decrypted_secrets")


def test_auth_functions_read_postgrest_claims(db: Conn) -> None:
    act_as_user(db, DEMO_USER)
    row = db.execute("select auth.uid(), auth.role(), auth.jwt() ->> 'aud'").fetchone()
    assert row == (UUID(DEMO_USER), "authenticated", "authenticated")


def test_roles_match_supabase(db: Conn) -> None:
    rows = {
        row[0]: row[1:]
        for row in db.execute(
            "select rolname, rolcanlogin, rolinherit, rolbypassrls from pg_roles"
            " where rolname in ('anon', 'authenticated', 'service_role', 'authenticator')"
        ).fetchall()
    }
    # (can log in, inherits, bypasses RLS). Created noinherit (supabase/postgres
    # init-scripts/00000000000000-initial-schema.sql:24-26), the three API roles inherit since
    # migrations/db/migrations/20230529180330_alter_api_roles_for_inherit.sql:3-5.
    assert rows == {
        "anon": (False, True, False),
        "authenticated": (False, True, False),
        "service_role": (False, True, True),
        "authenticator": (True, False, False),
    }


def test_jobs_are_published_to_realtime(db: Conn) -> None:
    row = db.execute(
        "select count(*) from pg_publication_tables"
        " where pubname = 'supabase_realtime' and schemaname = 'public' and tablename = 'jobs'"
    ).fetchone()
    assert row == (1,)
    assert db.execute("show wal_level").fetchone() == ("logical",)


def test_demo_user_is_seeded(db: Conn) -> None:
    row = db.execute("select email from auth.users where id = %s", (DEMO_USER,)).fetchone()
    assert row == ("demo@jobhook.local",)


def test_pg_net_privileges_are_upstreams(db: Conn) -> None:
    # supabase/pg_net v0.20.4: the request functions are SECURITY INVOKER since 0.12
    # (sql/pg_net--0.11.0--0.12.0.sql) and keep PostgreSQL's default EXECUTE for PUBLIC; the
    # schema, tables and sequences are granted to PUBLIC (sql/pg_net.sql:355-357).
    rows = db.execute(
        "select p.proname, p.prosecdef, has_function_privilege('anon', p.oid, 'execute')"
        " from pg_proc p where p.pronamespace = 'net'::regnamespace"
        " and p.proname in ('http_get', 'http_post', 'http_delete', '_http_collect_response')"
        " order by 1"
    ).fetchall()
    assert rows == [
        ("_http_collect_response", False, True),
        ("http_delete", False, True),
        ("http_get", False, True),
        ("http_post", False, True),
    ]
    row = db.execute(
        "select has_table_privilege('public', 'net.http_request_queue', 'insert'),"
        " has_table_privilege('public', 'net._http_response', 'delete'),"
        " has_sequence_privilege('public', 'net.http_request_queue_id_seq', 'usage')"
    ).fetchone()
    assert row == (True, True, True)


def test_clients_may_call_http_delete_as_on_supabase(db: Conn) -> None:
    act_as_user(db, DEMO_USER)
    db.execute("select net.http_delete('http://h/x')")


def test_supabase_gives_its_roles_the_net_schema(db: Conn) -> None:
    # supabase/postgres migrations/db/migrations/20250220051611_pg_net_perms_fix.sql: the role
    # Database Webhooks run as, created at `create extension pg_net`, and USAGE for it.
    row = db.execute(
        "select rolcanlogin, rolinherit, rolcreaterole from pg_roles"
        " where rolname = 'supabase_functions_admin'"
    ).fetchone()
    assert row == (True, False, True)
    for role in ("supabase_functions_admin", "postgres", "anon", "authenticated", "service_role"):
        assert db.execute(
            "select has_schema_privilege(%s, 'net', 'usage')", (role,)
        ).fetchone() == (True,)


def test_http_collect_response_is_deprecated_and_fails_as_upstream(db: Conn) -> None:
    # sql/pg_net.sql:339-353: a notice, then a SELECT with nowhere to put its result.
    with pytest.raises(psycopg.errors.SyntaxError, match="query has no destination"):
        db.execute("select net.http_collect_response(1)")


def test_vault_ciphertext_is_bound_to_its_row(test_db: Stack) -> None:
    # supabase/vault v0.3.1 sql/supabase_vault--0.3.0.sql:40, 78, 109: the row's id is the
    # associated data, so a ciphertext copied into another row does not decrypt there
    # (src/pgsodium.c:132, "invalid ciphertext"). Only the superuser may write vault.secrets
    # directly (postgres has SELECT and DELETE there, tests/test_roles.py), so it plants the copy.
    with psycopg.connect(test_db.admin_url) as admin:
        try:
            vault.write(admin, "original", "s3cret-value")
            admin.execute(
                "insert into vault.secrets (name, secret, nonce)"
                " select 'copy', secret, nonce from vault.secrets where name = 'original'"
            )
            with pytest.raises(psycopg.errors.InternalError, match="invalid ciphertext"):
                admin.execute(
                    "select decrypted_secret from vault.decrypted_secrets where name = 'copy'"
                )
        finally:
            admin.rollback()
