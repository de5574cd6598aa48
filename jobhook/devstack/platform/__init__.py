"""Stand-ins for the database pieces Supabase provides, for the dev stack and the tests.

`platform.sql` mirrors what Supabase's image creates before a project's migrations (roles, the
auth schema, the extensions schema, the Realtime publication, the migration history table). The
`*.control` and `*--*.sql` files are stand-in extensions (pg_net, supabase_vault) that
`jobhook.devstack.cluster` installs where this cluster's PostgreSQL looks for extensions.
"""

from __future__ import annotations

from importlib import resources

import psycopg


def install(conn: psycopg.Connection[object]) -> None:
    """Create the platform pieces in the connected database; safe to run again."""
    sql = resources.files(__package__).joinpath("platform.sql").read_text()
    with conn.transaction():
        conn.execute(sql.encode())
