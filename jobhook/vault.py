"""Read and write Supabase Vault secrets by name (`vault.create_secret` / `vault.update_secret`).

The webhook URL and signing secret live in Vault so that no migration, dump or trigger argument
ever carries them. On hosted Supabase the CLI writes them from `[db.vault]` in config.toml; the dev
stack writes them here.
"""

from __future__ import annotations

import base64
import secrets
from typing import Any

import psycopg

from jobhook.store import queries

WEBHOOK_URL = "jobhook_webhook_url"
WEBHOOK_SECRET = "jobhook_webhook_secret"  # noqa: S105 - the secret's name, not a secret


def new_webhook_secret() -> str:
    """A Standard Webhooks secret: `whsec_` and 32 random bytes in base64."""
    return "whsec_" + base64.b64encode(secrets.token_bytes(32)).decode()


def read(conn: psycopg.Connection[Any], name: str) -> str | None:
    row = conn.execute(queries()["vault_read"], {"name": name}).fetchone()
    return None if row is None else str(row[0])


def write(conn: psycopg.Connection[Any], name: str, value: str) -> None:
    """Create the secret, or replace its value when it differs."""
    row = conn.execute(queries()["vault_find"], {"name": name}).fetchone()
    if row is None:
        conn.execute(queries()["vault_create"], {"value": value, "name": name})
    elif row[1] != value:
        conn.execute(queries()["vault_update"], {"id": row[0], "value": value})


def ensure(conn: psycopg.Connection[Any], name: str, default: str) -> str:
    """The secret's value, creating it with `default` when it does not exist yet."""
    current = read(conn, name)
    if current is None:
        write(conn, name, default)
        return default
    return current
