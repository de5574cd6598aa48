"""The migrations as the real supabase CLI pushes them (the CLI as package.json pins it).

`supabase db push --db-url` on a fresh database (the platform stand-ins, nothing else: what a new
hosted project holds) must build what the dev stack's own runner builds, and `supabase migration
list` must see the dev stack's history as applied.
"""

from __future__ import annotations

import difflib
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import psycopg
import pytest

from jobhook.devstack import migrations
from jobhook.devstack.cluster import PASSWORD
from jobhook.devstack.database import PROJECT_DIR
from tests.conftest import Stack
from tests.test_schemas import MIGRATIONS, Built, apply_migrations, build

CLI = PROJECT_DIR / "node_modules" / ".bin" / "supabase"
CLI_VERSION = "2.117.0"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    assert CLI.exists(), f"{CLI} is missing: run ./scripts/bootstrap"
    return subprocess.run(  # noqa: S603
        [str(CLI), *args, "--workdir", str(PROJECT_DIR)],
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
        input="y\n",
    )


def cli_url(conn: psycopg.Connection[Any]) -> str:
    info = conn.info
    return (
        f"postgresql://{info.user}:{PASSWORD}@{info.host}:{info.port}/{info.dbname}?sslmode=disable"
    )


HISTORY = "select version, name, statements from supabase_migrations.schema_migrations order by 1"

# The history rows `supabase db push` wrote, kept by the `pushed` fixture.
CLI_HISTORY: list[tuple[Any, ...]] = []


def push_with_the_cli(conn: psycopg.Connection[Any]) -> None:
    result = cli("db", "push", "--db-url", cli_url(conn), "--include-all", "--yes")
    assert result.returncode == 0, result.stdout + result.stderr
    CLI_HISTORY[:] = conn.execute(HISTORY).fetchall()


@pytest.fixture(scope="module")
def pushed() -> tuple[Built, Built]:
    """(pushed by the CLI, applied by the dev stack's runner), built side by side."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        by_cli = pool.submit(build, push_with_the_cli)
        by_runner = pool.submit(build, apply_migrations)
        return by_cli.result(), by_runner.result()


def test_the_runner_writes_the_history_as_the_cli_writes_it(
    pushed: tuple[Built, Built], test_db: Stack
) -> None:
    with psycopg.connect(test_db.url) as conn:
        ours = conn.execute(HISTORY).fetchall()
    assert len(CLI_HISTORY) == len(migrations.discover(MIGRATIONS))
    assert [row[:2] for row in ours] == [row[:2] for row in CLI_HISTORY]
    for mine, theirs in zip(ours, CLI_HISTORY, strict=True):
        assert mine[2] == theirs[2], f"{mine[0]}_{mine[1]}: statements differ"


def test_the_cli_is_the_pinned_one() -> None:
    result = cli("--version")
    assert result.stdout.strip() == CLI_VERSION


def test_db_push_on_a_fresh_database_builds_what_the_runner_builds(
    pushed: tuple[Built, Built],
) -> None:
    by_cli, by_runner = pushed
    assert "Name: ring(text, jsonb, jsonb, integer); Type: FUNCTION; Schema: jobhook" in (
        by_cli.objects
    )
    problems = []
    for name in sorted(by_cli.objects.keys() ^ by_runner.objects.keys()):
        side = "the CLI" if name in by_cli.objects else "the runner"
        problems.append(f"only {side} built: {name}")
    for name in sorted(by_cli.objects.keys() & by_runner.objects.keys()):
        if by_cli.objects[name] != by_runner.objects[name]:
            diff = difflib.unified_diff(
                by_cli.objects[name].splitlines(),
                by_runner.objects[name].splitlines(),
                "cli",
                "runner",
                lineterm="",
            )
            problems.append(f"differs: {name}\n" + "\n".join(diff))
    assert not problems, "\n\n".join(problems)
    assert by_cli.rows == by_runner.rows
    assert by_cli.roles == by_runner.roles


def test_migration_list_sees_the_dev_stack_history_as_applied(test_db: Stack) -> None:
    with psycopg.connect(test_db.url) as conn:
        url = cli_url(conn)
    result = cli("migration", "list", "--db-url", url)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = re.findall(r"^\s*`?(\d*)`?\s*\|\s*`?(\d*)`?\s*\|", result.stdout, re.MULTILINE)
    local = {m.version for m in migrations.discover(MIGRATIONS)}
    assert {remote for _, remote in rows} == local
    assert all(left == right for left, right in rows), result.stdout
