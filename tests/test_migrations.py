"""The migration runner, and the migrations as the supabase CLI would see them."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobhook.devstack import migrations
from jobhook.devstack.database import PROJECT_DIR
from tests.conftest import Stack

MIGRATIONS = PROJECT_DIR / "supabase" / "migrations"


def test_every_migration_is_recorded_where_the_supabase_cli_looks(
    db: psycopg.Connection[tuple[Any, ...]],
) -> None:
    rows = db.execute(
        "select version, name, statements[1] is not null"
        " from supabase_migrations.schema_migrations order by version"
    ).fetchall()
    assert rows == [(m.version, m.name, True) for m in migrations.discover(MIGRATIONS)]


def test_rerunning_applies_nothing(db: psycopg.Connection[tuple[Any, ...]]) -> None:
    assert migrations.apply(db, MIGRATIONS) == []


def test_a_new_migration_is_applied_once_in_order(
    db: psycopg.Connection[tuple[Any, ...]], tmp_path: Path
) -> None:
    for m in migrations.discover(MIGRATIONS):
        (tmp_path / m.path.name).write_text(m.sql)
    (tmp_path / "29991231000000_add_probe.sql").write_text(
        "create table public.probe (id int primary key);"
    )
    applied = migrations.apply(db, tmp_path)
    assert [m.name for m in applied] == ["add_probe"]
    assert migrations.apply(db, tmp_path) == []
    assert db.execute("select to_regclass('public.probe') is not null").fetchone() == (True,)


def test_a_failing_migration_leaves_neither_changes_nor_a_record(
    db: psycopg.Connection[tuple[Any, ...]], tmp_path: Path
) -> None:
    for m in migrations.discover(MIGRATIONS):
        (tmp_path / m.path.name).write_text(m.sql)
    (tmp_path / "29991231000000_half_done.sql").write_text(
        "create table public.half (id int);\nselect no_such_function();"
    )
    with pytest.raises(migrations.MigrationError, match=r"29991231000000_half_done\.sql failed"):
        migrations.apply(db, tmp_path)
    assert db.execute("select to_regclass('public.half')").fetchone() == (None,)
    assert "29991231000000" not in migrations.applied_versions(db)


def test_badly_named_files_are_refused_with_the_rule(tmp_path: Path) -> None:
    (tmp_path / "add_things.sql").write_text("select 1;")
    with pytest.raises(migrations.MigrationError, match=r"<timestamp>_<name>\.sql"):
        migrations.discover(tmp_path)


def test_duplicate_versions_are_refused(tmp_path: Path) -> None:
    (tmp_path / "1_a.sql").write_text("select 1;")
    (tmp_path / "1_b.sql").write_text("select 1;")
    with pytest.raises(migrations.MigrationError, match="share version 1"):
        migrations.discover(tmp_path)


def test_no_migration_holds_a_secret_or_a_url() -> None:
    for m in migrations.discover(MIGRATIONS):
        assert not re.search(r"whsec_[A-Za-z0-9+/=]{16,}", m.sql), m.path.name
        assert not re.search(r"https?://", m.sql), m.path.name


def test_migrations_do_not_branch_on_the_environment() -> None:
    for m in migrations.discover(MIGRATIONS):
        code = re.sub(r"--[^\n]*", "", m.sql).lower()
        for word in ("localhost", "127.0.0.1", "inet_server_addr", "current_database()"):
            assert word not in code, f"{m.path.name} looks at where it runs: {word!r}"


def test_config_toml_pins_what_the_dev_stack_mirrors(test_db: Stack) -> None:
    config = tomllib.loads((PROJECT_DIR / "supabase" / "config.toml").read_text())
    assert config["db"]["major_version"] == 15
    assert config["db"]["port"] == 54322
    assert config["db"]["seed"]["sql_paths"] == ["./seed.sql"]
    assert set(config["db"]["vault"]) == {"jobhook_webhook_url", "jobhook_webhook_secret"}
    assert config["realtime"]["enabled"] is True
