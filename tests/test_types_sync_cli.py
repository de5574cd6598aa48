"""`jobhook types sync` while a deployment runs: a type that deployment cannot run is refused
with the way out (restart it), never accepted in silence."""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest

import handlers
from jobhook.registry import registry
from tests.cli_process import explained, run
from tests.conftest import Stack

pytestmark = pytest.mark.commits


def serving(url: str, names: list[str]) -> None:
    """What a running deployment's renewal leaves behind: its types served for a while yet."""
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(
            "update jobhook.job_types set enabled = true,"
            " served_until = now() + interval '5 minutes' where name = any(%s)",
            (names,),
        )


def enabled(url: str) -> set[str]:
    with psycopg.connect(url) as conn:
        rows = conn.execute("select name from jobhook.job_types where enabled").fetchall()
    return {row[0] for row in rows}


def test_sync_refuses_a_type_the_running_deployment_does_not_serve(
    tmp_path: Path, committed: Stack
) -> None:
    handlers.load_all()
    local = sorted(t.name for t in registry)
    assert "sample_task" in local
    assert len(local) > 1
    # The running deployment (a `make dev` started before the new handler existed) serves
    # sample_task only.
    serving(committed.url, ["sample_task"])
    before = enabled(committed.url)
    url = ["--database-url", committed.url]

    refused = run(*url, "types", "sync", data_dir=tmp_path)
    message = explained(refused)
    assert refused.returncode == 1
    new = [name for name in local if name != "sample_task"]
    assert f"no running deployment serves {', '.join(new)}" in message
    assert "restart the dev stack (Ctrl-C, then `make dev`)" in message
    assert enabled(committed.url) == before  # nothing was written

    forced = run(*url, "types", "sync", "--force", data_dir=tmp_path)
    assert forced.returncode == 0, forced.stderr
    assert f"warning: no running deployment serves {new[0]} yet" in forced.stderr
    assert set(local) <= enabled(committed.url)


def test_sync_writes_quietly_what_the_running_deployment_serves(
    tmp_path: Path, committed: Stack
) -> None:
    handlers.load_all()
    with psycopg.connect(committed.url, autocommit=True) as conn, conn.cursor() as cursor:
        cursor.executemany(
            "insert into jobhook.job_types (name, served_until)"
            " values (%s, now() + interval '5 minutes')"
            " on conflict (name) do update set served_until = excluded.served_until",
            [(t.name,) for t in registry],
        )
    synced = run("--database-url", committed.url, "types", "sync", data_dir=tmp_path)
    assert synced.returncode == 0, synced.stderr
    assert "warning" not in synced.stderr
    assert "synced sample_task" in synced.stdout
