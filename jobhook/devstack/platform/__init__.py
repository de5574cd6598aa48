"""Stand-ins for the database pieces Supabase provides, for the dev stack and the tests.

`roles.sql` gives a cluster hosted Supabase's roles (the cluster runs it at every start);
`platform.sql` mirrors what Supabase's image creates in a database before a project's migrations
(the auth schema, the extensions schema and the extensions a project enables, Vault, the Realtime
publication, the migration history table), owned and granted as on hosted. Both run as the
superuser, supabase_admin. The `*.control` and `*--*.sql` files are stand-in extensions (pg_net,
pg_jsonschema, supabase_vault) that `jobhook.devstack.cluster` installs where this cluster's
PostgreSQL looks for extensions.
"""

from __future__ import annotations

from importlib import resources

import psycopg


def install(conn: psycopg.Connection[object]) -> None:
    """Create the platform pieces in the connected database; safe to run again. `conn` is the
    superuser's (Cluster.admin_url)."""
    sql = resources.files(__package__).joinpath("platform.sql").read_text()
    with conn.transaction():
        conn.execute(sql.encode())
