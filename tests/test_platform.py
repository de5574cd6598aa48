"""The dev stack's stand-ins behave as the Supabase pieces they mirror (pg_net, Vault, auth)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
import pytest

from jobhook import vault
from tests.conftest import DEMO_USER, act_as_user

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
    # (can log in, inherits, bypasses RLS)
    assert rows == {
        "anon": (False, False, False),
        "authenticated": (False, False, False),
        "service_role": (False, False, True),
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
