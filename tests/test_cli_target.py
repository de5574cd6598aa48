"""Which database the client verbs use: --database-url, then DATABASE_URL, then the dev stack
recorded in the data dir, then the default; said on stderr whenever it is not the default."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import psycopg
import pytest

from jobhook.cli import target
from jobhook.config import LOCAL_DATABASE_URL
from jobhook.devstack.cluster import free_port
from jobhook.devstack.stack import RECORD_NAME, recorded
from tests.cli_process import run
from tests.conftest import Stack, insert_job

pytestmark = pytest.mark.commits


def record(data: Path, database_url: str, pid: int | None = None) -> None:
    data.mkdir(parents=True, exist_ok=True)
    (data / RECORD_NAME).write_text(
        json.dumps(
            {
                "database_url": database_url,
                "app_url": "http://127.0.0.1:1",
                "webhook_url": "http://127.0.0.1:1/webhooks/jobs",
                "pid": pid or os.getpid(),
            }
        )
    )


def test_the_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBHOOK_DATA_DIR", str(tmp_path))
    monkeypatch.delenv("DATABASE_URL", raising=False)
    assert target.resolve(None) == target.Target(LOCAL_DATABASE_URL, "the default")
    assert target.resolve(None).is_default

    record(tmp_path, "postgresql://postgres:postgres@127.0.0.1:5/postgres")
    chosen = target.resolve(None)
    assert chosen.url.endswith(":5/postgres")
    assert chosen.source.startswith("the dev stack recorded in")

    monkeypatch.setenv("DATABASE_URL", "postgresql://u:secret@db.example.com:6543/postgres")
    chosen = target.resolve(None)
    assert chosen.source == "DATABASE_URL"
    assert chosen.describe() == "postgresql://u:***@db.example.com:6543/postgres (DATABASE_URL)"

    assert target.resolve("postgresql://flag@h/d") == target.Target(
        "postgresql://flag@h/d", "--database-url"
    )


def test_a_record_left_by_a_dead_stack_is_ignored(tmp_path: Path) -> None:
    gone = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    record(tmp_path, "postgresql://postgres:postgres@127.0.0.1:5/postgres", int(gone.stdout))
    assert recorded(tmp_path) is None


def test_the_verbs_use_the_recorded_stack_and_say_so(tmp_path: Path, committed: Stack) -> None:
    record(tmp_path, committed.url)
    job_id = insert_job(committed.url, "sample_task")
    listed = run("jobs", "list", data_dir=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert str(job_id) in listed.stdout
    assert f"database: postgresql://postgres:***@127.0.0.1:{committed.cluster.port}/postgres" in (
        listed.stderr
    )
    assert "the dev stack recorded in" in listed.stderr

    # DATABASE_URL beats the record; the flag beats both.
    elsewhere = f"postgresql://postgres:postgres@127.0.0.1:{free_port()}/postgres"
    by_env = run("jobs", "list", data_dir=tmp_path, env={"DATABASE_URL": elsewhere})
    assert by_env.returncode == 2
    assert "(DATABASE_URL)" in by_env.stderr
    by_flag = run(
        "--database-url", committed.url, "jobs", "list", data_dir=tmp_path,
        env={"DATABASE_URL": elsewhere},
    )  # fmt: skip
    assert by_flag.returncode == 0, by_flag.stderr
    assert "(--database-url)" in by_flag.stderr


def test_the_verbs_never_read_a_database_from_dot_env(tmp_path: Path, committed: Stack) -> None:
    """`.env` is the dev stack's (handler variables); a DATABASE_URL in it is not a target."""
    from jobhook.devstack.database import PROJECT_DIR

    dot_env = PROJECT_DIR / ".env"
    if dot_env.exists():
        pytest.skip("this checkout has a .env of its own")
    record(tmp_path, committed.url)
    dot_env.write_text(f"DATABASE_URL=postgresql://x:y@127.0.0.1:{free_port()}/x\n")
    try:
        listed = run("jobs", "list", data_dir=tmp_path)
    finally:
        dot_env.unlink()
    assert listed.returncode == 0, listed.stderr
    assert "the dev stack recorded in" in listed.stderr


def test_the_sweep_and_types_follow_the_same_rule(tmp_path: Path, committed: Stack) -> None:
    record(tmp_path, committed.url)
    swept = run("sweep", data_dir=tmp_path)
    assert swept.returncode == 0, swept.stderr
    assert "the dev stack recorded in" in swept.stderr
    listed = run("types", "list", "--json", data_dir=tmp_path)
    assert listed.returncode == 0, listed.stderr
    assert {row["name"] for row in json.loads(listed.stdout)} >= {"sample_task"}
    with psycopg.connect(committed.url) as conn:
        assert conn.execute("select count(*) from jobhook.job_types").fetchone() is not None
