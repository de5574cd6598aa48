"""Every failure a user meets first, through the real command: one or two lines naming the
problem and the fix, no traceback unless --debug."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from jobhook.devstack.cluster import free_port
from tests.cli_process import explained, run
from tests.conftest import Stack


@pytest.fixture
def listening() -> Iterator[int]:
    """A port something else listens on, as a `supabase start` holds 54322."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen()
        yield sock.getsockname()[1]


def test_a_taken_database_port_is_named_and_leaves_no_data_dir(
    tmp_path: Path, listening: int
) -> None:
    data = tmp_path / "stack"
    result = run(
        "dev", "--db-port", str(listening), "--app-port", str(free_port()),
        "--data-dir", str(data), data_dir=data,
    )  # fmt: skip
    message = explained(result)
    assert f"port {listening} (database) is taken" in message
    assert "--db-port" in message
    assert "DB_PORT=" in message
    assert not data.exists()


def test_a_taken_app_port_is_named_and_leaves_no_data_dir(tmp_path: Path, listening: int) -> None:
    data = tmp_path / "stack"
    result = run(
        "demo", "--db-port", str(free_port()), "--app-port", str(listening),
        "--data-dir", str(data), data_dir=data,
    )  # fmt: skip
    message = explained(result)
    assert f"port {listening} (app) is taken" in message
    assert "APP_PORT=" in message
    assert not data.exists()


def test_no_database(tmp_path: Path) -> None:
    url = f"postgresql://postgres:postgres@127.0.0.1:{free_port()}/postgres"
    message = explained(run("--database-url", url, "types", "list", data_dir=tmp_path))
    assert "cannot reach the database at postgresql://postgres:***@" in message
    assert "make dev" in message
    assert "postgres:postgres" not in message


def test_a_database_without_migrations(tmp_path: Path, test_db: Stack) -> None:
    with psycopg.connect(test_db.url, autocommit=True) as conn:
        conn.execute("drop database if exists no_migrations")
        conn.execute("create database no_migrations")
    url = test_db.cluster.database_url("no_migrations")
    for verb in (["types", "list"], ["jobs", "list"], ["types", "sync"]):
        message = explained(run("--database-url", url, *verb, data_dir=tmp_path))
        assert "has no jobhook schema: its migrations are not applied" in message
        assert "supabase db push" in message


def test_a_wrong_password(tmp_path: Path, test_db: Stack) -> None:
    url = test_db.url.replace("postgres:postgres@", "postgres:wrong@")
    message = explained(run("--database-url", url, "types", "list", data_dir=tmp_path))
    assert "refused the password" in message
    assert "wrong" not in message  # the password is never echoed


def test_a_malformed_user(tmp_path: Path) -> None:
    for verb in (["jobs", "list"], ["submit", "sample_task"], ["token"]):
        message = explained(run(*verb, "--user", "alice", data_dir=tmp_path))
        assert "must be a user id (a UUID such as" in message
        assert "'alice'" in message


def test_a_short_api_key_stops_dev_before_anything_starts(tmp_path: Path) -> None:
    data = tmp_path / "stack"
    result = run(
        "dev", "--db-port", str(free_port()), "--app-port", str(free_port()),
        "--data-dir", str(data), data_dir=data, env={"JOBHOOK_API_KEY": "short"},
    )  # fmt: skip
    message = explained(result)
    assert "JOBHOOK_API_KEY is invalid" in message
    assert "at least 32 characters" in message
    assert not data.exists()


def test_a_malformed_database_url(tmp_path: Path) -> None:
    message = explained(run("types", "list", data_dir=tmp_path, env={"DATABASE_URL": "nope"}))
    assert "the database URL is malformed" in message
    assert "postgresql://USER:PASSWORD@HOST:PORT/DATABASE" in message


def test_debug_shows_the_traceback(tmp_path: Path) -> None:
    url = f"postgresql://postgres:postgres@127.0.0.1:{free_port()}/postgres"
    result = run("--debug", "--database-url", url, "types", "list", data_dir=tmp_path)
    assert result.returncode == 2
    assert "Traceback (most recent call last)" in result.stderr
    assert "error: cannot reach the database" in result.stderr
