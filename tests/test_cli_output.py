"""What the read verbs print: `jobs list` in 80 columns with whole ids, `--json` everywhere,
`jobs watch` that ends when nothing is left to watch, failed jobs that say why."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import UUID

import psycopg
import pytest

from jobhook.cli.watch import status_text
from tests.cli_process import run
from tests.conftest import Stack, insert_job

pytestmark = pytest.mark.commits
ERROR = "the upstream service answered 503; try again later"


def failed_job(url: str) -> UUID:
    """A job that ran once and failed for good, through the state machine's own functions."""
    job_id = insert_job(url, "one_shot", {"n": 1})
    with psycopg.connect(url, autocommit=True) as conn:
        [(attempt,)] = conn.execute(
            "select attempt from jobhook.claim(array[%s]::uuid[], 'test')", (job_id,)
        ).fetchall()
        conn.execute("select jobhook.fail(%s, %s, %s, false)", (job_id, attempt, ERROR))
    return job_id


def is_job_line(line: str) -> bool:
    try:
        UUID(line.split()[0])
    except (ValueError, IndexError):
        return False  # the footer ("2 of 2") or a job's error line
    return True


def test_jobs_list_fits_80_columns_with_whole_ids(tmp_path: Path, committed: Stack) -> None:
    pending = insert_job(committed.url, "sample_task", {"steps": 2})
    failed = failed_job(committed.url)
    listed = run("--database-url", committed.url, "jobs", "list", data_dir=tmp_path)
    assert listed.returncode == 0, listed.stderr
    lines = listed.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines), lines
    assert lines[0].split() == ["id", "type", "status", "done", "try", "age"]
    by_id = {line.split()[0]: line.split() for line in lines[1:] if is_job_line(line)}
    assert by_id[str(pending)][1:5] == ["sample_task", "pending", "0%", "0"]
    assert by_id[str(failed)][1:5] == ["one_shot", "failed", "0%", "1"]
    assert f"  error: {ERROR}" in lines
    # A whole id pastes into `jobs show`.
    shown = run("--database-url", committed.url, "jobs", "show", str(failed), data_dir=tmp_path)
    assert json.loads(shown.stdout)["error"] == ERROR


def test_every_read_verb_speaks_json(tmp_path: Path, committed: Stack) -> None:
    job_id = insert_job(committed.url, "sample_task", {"steps": 2})
    url = ["--database-url", committed.url]
    listed = json.loads(run(*url, "jobs", "list", "--json", data_dir=tmp_path).stdout)
    assert listed["total"] == 1
    assert listed["jobs"][0]["id"] == str(job_id)
    shown = json.loads(run(*url, "jobs", "show", str(job_id), "--json", data_dir=tmp_path).stdout)
    assert shown["payload"] == {"steps": 2}
    types = json.loads(run(*url, "types", "list", "--json", data_dir=tmp_path).stdout)
    assert {"name", "enabled", "tier"} <= set(types[0])
    swept = json.loads(run(*url, "sweep", data_dir=tmp_path).stdout)
    assert {"rescued", "dispatched", "pruned"} <= set(swept)


def test_watch_with_nothing_unfinished_says_so_and_ends(tmp_path: Path, committed: Stack) -> None:
    failed_job(committed.url)
    watched = run("--database-url", committed.url, "jobs", "watch", data_dir=tmp_path, timeout=30)
    assert watched.returncode == 0
    assert "no unfinished jobs to watch" in watched.stderr


def test_watch_of_a_finished_job_prints_it_and_ends(tmp_path: Path, committed: Stack) -> None:
    failed = failed_job(committed.url)
    watched = run(
        "--database-url", committed.url, "jobs", "watch", str(failed), "--json",
        data_dir=tmp_path, timeout=30,
    )  # fmt: skip
    assert watched.returncode == 0, watched.stderr
    assert json.loads(watched.stdout)["status"] == "failed"


def row(**fields: Any) -> dict[str, Any]:
    return {"status": "processing", "attempt": 1, "progress_message": None, "error": None} | fields


def test_a_failed_jobs_line_shows_its_error_not_its_last_progress() -> None:
    failed = row(status="failed", progress_message="step 2 of 3", error="boom: the disk is full")
    assert "boom: the disk is full" in status_text(failed)
    assert "step 2 of 3" not in status_text(failed)
    retrying = row(status="pending", attempt=1, progress_message="step 1", error="timed out")
    assert "timed out" in status_text(retrying)
    running = row(progress_message="step 2 of 3", error="an earlier attempt's error")
    assert "step 2 of 3" in status_text(running)
