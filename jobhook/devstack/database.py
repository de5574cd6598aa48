"""Bring a database to the state the app expects: platform pieces, migrations, seed, Vault.

Used by the dev stack on every start and by the test suite for its throwaway clusters, so both
run exactly the migrations that `supabase db push` runs on hosted Supabase.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg

from jobhook import vault
from jobhook.devstack import migrations, platform

PROJECT_DIR = Path(__file__).resolve().parents[2]
DEFAULT_WEBHOOK_URL = "http://127.0.0.1:8000/webhooks/jobs"


@dataclass(frozen=True)
class Prepared:
    applied: list[migrations.Migration]
    webhook_url: str
    webhook_secret: str


def prepare(
    database_url: str,
    *,
    admin_url: str,
    project_dir: Path = PROJECT_DIR,
    webhook_url: str = DEFAULT_WEBHOOK_URL,
    webhook_secret: str | None = None,
) -> Prepared:
    """Install, migrate and seed; safe to run on every start.

    As on hosted Supabase, the platform pieces are the superuser's (`admin_url`, supabase_admin)
    and everything of the project's, migrations, seed and Vault values, is `database_url`'s role
    (postgres), so a migration that hosted would refuse fails here too.

    The signing secret is kept across restarts: an explicit `webhook_secret` replaces it, and
    otherwise the one already in Vault stays (a new one is generated only the first time).
    """
    supabase_dir = project_dir / "supabase"
    with psycopg.connect(admin_url, autocommit=True) as admin:
        platform.install(admin)
    with psycopg.connect(database_url, autocommit=True) as conn:
        applied = migrations.apply(conn, supabase_dir / "migrations")
        seed(conn, supabase_dir / "seed.sql")
        with conn.transaction():
            vault.write(conn, vault.WEBHOOK_URL, webhook_url)
            if webhook_secret is not None:
                vault.write(conn, vault.WEBHOOK_SECRET, webhook_secret)
            secret = vault.ensure(conn, vault.WEBHOOK_SECRET, vault.new_webhook_secret())
    return Prepared(applied=applied, webhook_url=webhook_url, webhook_secret=secret)


def seed(conn: psycopg.Connection[Any], path: Path) -> None:
    if path.exists():
        with conn.transaction():
            conn.execute(path.read_bytes())
