"""Apply `supabase/migrations/*.sql` in order, recording each as the supabase CLI does.

The CLI keeps its history in `supabase_migrations.schema_migrations (version, statements, name)`,
each migration as its statements (jobhook.devstack.statements cuts them as the CLI does);
recording there means `supabase migration list` and `supabase db push` agree with the dev stack
about what has run. Each file runs in its own transaction together with its history row, so a
failing migration leaves neither its changes nor a record behind.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import LiteralString

import psycopg

from jobhook.devstack import statements
from jobhook.jobs import SetupError
from jobhook.store import named_queries

# The CLI's own file name rule (supabase/cli pkg/migration/file.go): <digits>_<name>.sql
MIGRATION_FILE = re.compile(r"^(?P<version>[0-9]+)_(?P<name>.*)\.sql$")


@cache
def _queries() -> dict[str, LiteralString]:
    return named_queries("jobhook.devstack", "migrations.sql")


class MigrationError(SetupError):
    """A migration failed or the folder is malformed; the message names the file."""


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    path: Path

    @property
    def sql(self) -> str:
        return self.path.read_text(encoding="utf-8")


def discover(folder: Path) -> list[Migration]:
    migrations = []
    for path in sorted(folder.glob("*.sql")):
        match = MIGRATION_FILE.match(path.name)
        if match is None:
            raise MigrationError(
                f"{path.name}: migration files are named <timestamp>_<name>.sql "
                "(`supabase migration new <name>` makes one)"
            )
        migrations.append(Migration(match["version"], match["name"], path))
    versions = [m.version for m in migrations]
    duplicates = sorted({v for v in versions if versions.count(v) > 1})
    if duplicates:
        raise MigrationError(f"two migration files share version {', '.join(duplicates)}")
    return sorted(migrations, key=lambda m: int(m.version))


def applied_versions(conn: psycopg.Connection[object]) -> set[str]:
    rows = conn.execute(_queries()["applied_versions"]).fetchall()
    return {str(row[0]) for row in rows}  # type: ignore[index]


def apply(conn: psycopg.Connection[object], folder: Path) -> list[Migration]:
    """Apply the migrations not yet recorded; return those applied, in order."""
    done = applied_versions(conn)
    applied = []
    for migration in discover(folder):
        if migration.version in done:
            continue
        try:
            with conn.transaction():
                conn.execute(migration.sql.encode())
                conn.execute(
                    _queries()["record_migration"],
                    {
                        "version": migration.version,
                        "name": migration.name,
                        "statements": statements.split(migration.sql),
                    },
                )
        except psycopg.Error as exc:
            raise MigrationError(f"{migration.path.name} failed: {_describe(exc)}") from exc
        applied.append(migration)
    return applied


def _describe(exc: psycopg.Error) -> str:
    diag = exc.diag
    parts = [diag.message_primary or str(exc)]
    if diag.context:
        parts.append(f"context: {diag.context.strip()}")
    if diag.statement_position:
        parts.append(f"at character {diag.statement_position}")
    return "; ".join(parts)
