"""supabase/schemas/ (the current text of every SQL object) and supabase/migrations/ (the deltas
that run on live databases) build the same database.

Each is applied to a fresh cluster of its own, over the same platform stand-ins: pg_cron can
only be created in the database named by cron.database_name, and a cluster of its own also
gives each side its roles from scratch (jobhook_doorbell included). The two schema-only dumps
are then compared object by object, owners, grants, policies and function bodies included, and
so are the rows that define the database rather than hold its data.
"""

from __future__ import annotations

import difflib
import os
import re
import subprocess
import tempfile
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

# The dev stack's own modules, which build the test suite's cluster too; imported here only.
from jobhook.devstack import migrations, platform
from jobhook.devstack.cluster import PASSWORD, PG_BIN, SUPERUSER, Cluster, free_port

SUPABASE_DIR = Path(__file__).resolve().parent.parent / "supabase"
MIGRATIONS = SUPABASE_DIR / "migrations"
SCHEMAS = SUPABASE_DIR / "schemas"
# The supabase CLI applies declarative schema files in lexical order, so each is numbered.
SCHEMA_FILE = re.compile(r"^[0-9]{2}_[a-z0-9_]+\.sql$")

# pg_cron connects to the cluster to run a job; with nowhere to connect, the per-minute sweep
# never runs here, so it cannot write its bookkeeping (jobhook.locks) into the rows compared.
NO_SCHEDULED_RUNS = {"cron.use_background_workers": "off", "cron.host": "'/nonexistent'"}

# Rows that define the database: declarative files must hold them as the migrations do.
DEFINING_ROWS = {
    "jobhook.settings": "select to_jsonb(s) from jobhook.settings s",
    "jobhook.locks": "select to_jsonb(l) from jobhook.locks l order by l.name",
    "jobhook.job_types": "select to_jsonb(t) from jobhook.job_types t order by t.name",
    "cron.job": (
        "select jobname, schedule, command, database, username from cron.job order by jobname"
    ),
    "pg_publication_tables": (
        "select pubname, schemaname, tablename, attnames, rowfilter"
        " from pg_publication_tables order by pubname, schemaname, tablename"
    ),
}
# Roles live in the cluster, not in a dump: compare the attributes, comments and memberships.
ROLES = """
select r.rolname, r.rolsuper, r.rolinherit, r.rolcreaterole, r.rolcreatedb, r.rolcanlogin,
       r.rolreplication, r.rolbypassrls, r.rolconnlimit, shobj_description(r.oid, 'pg_authid'),
       array(select g.rolname || case when m.admin_option then ' (admin)' else '' end
               from pg_auth_members m join pg_roles g on g.oid = m.roleid
              where m.member = r.oid
              order by 1)
  from pg_roles r
 where r.rolname !~ '^pg_'
 order by r.rolname
"""

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Built:
    """What one side built: its schema-only dump, split into objects, and its defining rows."""

    objects: dict[str, str]
    rows: dict[str, list[tuple[Any, ...]]]
    roles: list[tuple[Any, ...]]


def apply_schemas(conn: psycopg.Connection[Any]) -> None:
    for path in sorted(SCHEMAS.glob("*.sql")):
        try:
            with conn.transaction():
                conn.execute(path.read_bytes())
        except psycopg.Error as exc:
            raise AssertionError(f"supabase/schemas/{path.name} failed: {exc}") from exc


def apply_migrations(conn: psycopg.Connection[Any]) -> None:
    migrations.apply(conn, MIGRATIONS)


def build(apply: Callable[[psycopg.Connection[Any]], None]) -> Built:
    """A cluster of its own, with the platform stand-ins and then `apply`; dumped, then gone."""
    cluster = Cluster(
        Path(tempfile.mkdtemp(prefix="jobhook-schemas-")),
        port=free_port(),
        settings=NO_SCHEDULED_RUNS,
    )
    try:
        cluster.start()
        with psycopg.connect(cluster.admin_url, autocommit=True) as admin:
            platform.install(admin)
        # As on hosted, the migrations (and the schema files) run as postgres.
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            apply(conn)
            rows = {name: conn.execute(sql).fetchall() for name, sql in DEFINING_ROWS.items()}
            roles = conn.execute(ROLES).fetchall()
        return Built(objects=split_dump(dump(cluster)), rows=rows, roles=roles)
    finally:
        cluster.destroy()


def dump(cluster: Cluster) -> str:
    """pg_dump's schema-only text, owners and grants included; the history table left out."""
    result = subprocess.run(  # noqa: S603
        [
            str(PG_BIN / "pg_dump"),
            "--schema-only",
            "--exclude-table=supabase_migrations.schema_migrations",
            "--host=127.0.0.1",
            f"--port={cluster.port}",
            f"--username={SUPERUSER}",
            "postgres",
        ],
        env={**os.environ, "PGPASSWORD": PASSWORD},
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert result.returncode == 0, f"pg_dump failed: {result.stderr}"
    return result.stdout


SECTION = re.compile(
    r"^--\n-- (?P<name>(?:Name|Data for Name): [^\n]*?)(?:; Owner: (?P<owner>[^\n]*))?\n--\n",
    re.MULTILINE,
)
# What differs between two dumps of equal databases: pg_dump's version lines, and the random
# key of the \restrict guard that newer minor releases put around a dump.
UNSTABLE = re.compile(r"^(?:-- Dumped (?:from|by) .*|\\(?:un)?restrict .*)$", re.MULTILINE)


def split_dump(text: str) -> dict[str, str]:
    """{"Name: ...; Type: ...; Schema: ...": its owner and statements}, for each object."""
    parts = SECTION.split(UNSTABLE.sub("", text))
    objects = {"(preamble)": parts[0].strip()}
    for name, owner, body in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        statements = body.strip().splitlines()
        # An ACL's lines follow the order grants were made in, which says nothing about who
        # holds what; compare them as a set.
        if "; Type: ACL;" in name:
            statements.sort()
        objects[name] = "\n".join([f"-- Owner: {owner}", *statements])
    return objects


@pytest.fixture(scope="module")
def built() -> tuple[Built, Built]:
    """(from the migrations, from the schema files), built side by side."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        from_migrations = pool.submit(build, apply_migrations)
        from_schemas = pool.submit(build, apply_schemas)
        return from_migrations.result(), from_schemas.result()


def test_schema_files_build_what_the_migrations_build(built: tuple[Built, Built]) -> None:
    from_migrations, from_schemas = built
    problems = []
    for name in sorted(from_migrations.objects.keys() - from_schemas.objects.keys()):
        problems.append(f"missing from supabase/schemas: {name}")
    for name in sorted(from_schemas.objects.keys() - from_migrations.objects.keys()):
        problems.append(f"in supabase/schemas but built by no migration: {name}")
    for name in sorted(from_migrations.objects.keys() & from_schemas.objects.keys()):
        migrated, declared = from_migrations.objects[name], from_schemas.objects[name]
        if migrated != declared:
            diff = difflib.unified_diff(
                migrated.splitlines(),
                declared.splitlines(),
                "migrations",
                "schemas",
                lineterm="",
            )
            problems.append(f"differs: {name}\n" + "\n".join(diff))
    assert not problems, "\n\n".join(problems)


def test_the_dump_covers_what_matters(built: tuple[Built, Built]) -> None:
    """Guards the comparison itself: had pg_dump left these out, equal dumps would prove little."""
    objects = built[0].objects
    ring = objects["Name: ring(text, jsonb, jsonb, integer); Type: FUNCTION; Schema: jobhook"]
    assert ring.startswith("-- Owner: jobhook_doorbell\n")
    assert "net.http_post" in ring
    for expected in (
        "Name: FUNCTION claim(job_ids uuid[], worker_id text); Type: ACL; Schema: jobhook",
        "Name: COLUMN jobs.cancel_requested_at; Type: ACL; Schema: public",
        "Name: jobs jobs_cancel_own; Type: POLICY; Schema: public",
        "Name: supabase_realtime jobs; Type: PUBLICATION TABLE; Schema: public",
        "Name: pg_cron; Type: EXTENSION; Schema: -",
    ):
        assert expected in objects


@pytest.mark.parametrize("rows", sorted(DEFINING_ROWS))
def test_defining_rows_match(built: tuple[Built, Built], rows: str) -> None:
    from_migrations, from_schemas = built
    assert from_schemas.rows[rows] == from_migrations.rows[rows], (
        f"{rows}: the migrations hold {from_migrations.rows[rows]},"
        f" the schema files {from_schemas.rows[rows]}"
    )


def test_no_job_types_are_defined_in_sql(built: tuple[Built, Built]) -> None:
    """The catalogue is synced from the handler registry; neither side writes a type itself."""
    assert built[0].rows["jobhook.job_types"] == built[1].rows["jobhook.job_types"] == []


def test_roles_match(built: tuple[Built, Built]) -> None:
    from_migrations, from_schemas = built
    assert from_schemas.roles == from_migrations.roles


def test_schema_files_are_numbered_and_name_no_migration() -> None:
    paths = sorted(SCHEMAS.glob("*.sql"))
    assert paths
    for path in paths:
        assert SCHEMA_FILE.match(path.name), f"{path.name}: name schema files NN_<concept>.sql"
        # A migration's version is a 14-digit timestamp; the current text explains itself.
        assert not re.search(r"\b[0-9]{14}\b", path.read_text()), (
            f"{path.name} points at a migration; say the reason instead"
        )
