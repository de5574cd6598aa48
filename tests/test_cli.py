"""The `jobhook` command as a user meets it: its verbs, its errors, the dev stack's lifecycle."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import jwt
import psycopg
import pytest
from typer.testing import CliRunner

from jobhook.cli.main import app
from jobhook.config import LOCAL_ISSUER, LOCAL_JWT_SECRET
from jobhook.devstack.cluster import Cluster, free_port, port_is_listening
from tests import cli_process
from tests.conftest import DEMO_USER, Stack, insert_job

pytestmark = pytest.mark.commits
OTHER_USER = "00000000-0000-4000-8000-0000000000b0"


@pytest.fixture
def cli(committed: Stack, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("DATABASE_URL", committed.url)
    from jobhook.config import get_settings

    get_settings.cache_clear()
    with psycopg.connect(committed.url, autocommit=True) as conn:
        # No delivery worker here: jobs stay pending, which is what these tests look at.
        conn.execute(
            "insert into auth.users (id, email) values (%s, 'other@example.com')"
            " on conflict do nothing",
            (OTHER_USER,),
        )
    return CliRunner()


def test_token_is_a_supabase_shaped_jwt(cli: CliRunner) -> None:
    result = cli.invoke(app, ["token", "--user", DEMO_USER])
    assert result.exit_code == 0
    token = result.stdout.strip()
    assert "\n" not in token
    claims = jwt.decode(
        token,
        LOCAL_JWT_SECRET,
        algorithms=["HS256"],
        audience="authenticated",
        issuer=LOCAL_ISSUER,
    )
    assert claims["sub"] == DEMO_USER
    assert claims["role"] == "authenticated"
    assert claims["exp"] > time.time()


def test_submit_show_list_cancel(cli: CliRunner) -> None:
    submitted = cli.invoke(app, ["submit", "sample_task", "--params", '{"steps": 2}'])
    assert submitted.exit_code == 0, submitted.output
    job_id = UUID(submitted.stdout.split()[-1])

    shown = cli.invoke(app, ["jobs", "show", str(job_id)])
    assert shown.exit_code == 0
    assert json.loads(shown.stdout)["payload"] == {"steps": 2}

    listed = cli.invoke(app, ["jobs", "list", "--status", "pending"])
    assert listed.exit_code == 0
    assert str(job_id) in listed.stdout

    cancelled = cli.invoke(app, ["jobs", "cancel", str(job_id)])
    assert cancelled.exit_code == 0
    assert "cancelled" in cancelled.stdout
    again = cli.invoke(app, ["jobs", "cancel", str(job_id)])
    assert again.exit_code == 1
    assert "is cancelled; only pending or processing jobs can be cancelled" in again.stderr


def test_submit_with_an_idempotency_key_returns_the_same_job(cli: CliRunner) -> None:
    first = cli.invoke(app, ["submit", "sample_task", "--idempotency-key", "k1"])
    second = cli.invoke(app, ["submit", "sample_task", "--idempotency-key", "k1"])
    assert first.stdout.split()[-1] == second.stdout.split()[-1]
    assert second.stdout.startswith("already submitted")


def test_submit_refusals_say_why(cli: CliRunner) -> None:
    unknown = cli.invoke(app, ["submit", "no_such_type"])
    assert unknown.exit_code == 1
    assert 'unknown job type "no_such_type"' in unknown.stderr
    assert "hint: known job types: one_shot, sample_task" in unknown.stderr
    not_json = cli.invoke(app, ["submit", "sample_task", "--params", "{steps: 2"])
    assert not_json.exit_code == 2
    assert "--params is not JSON" in not_json.stderr
    not_object = cli.invoke(app, ["submit", "sample_task", "--params", "[1]"])
    assert not_object.exit_code == 1
    assert "payload must be a JSON object, got array" in not_object.stderr


def test_another_users_job_does_not_exist_for_you(cli: CliRunner, committed: Stack) -> None:
    theirs = insert_job(committed.url, "sample_task", user_id=OTHER_USER)
    for verb in ("show", "cancel"):
        result = cli.invoke(app, ["jobs", verb, str(theirs)])
        assert result.exit_code == 1
        assert "not yours" in result.stderr
    listed = cli.invoke(app, ["jobs", "list"])
    assert str(theirs) not in listed.stdout


def test_types_sync_and_sweep(cli: CliRunner, committed: Stack) -> None:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        # one_shot was served by a deployment that is gone: its renewal has run out.
        conn.execute(
            "update jobhook.job_types set served_until = now() - interval '1 s'"
            " where name = 'one_shot'"
        )
    synced = cli.invoke(app, ["types", "sync"])
    assert synced.exit_code == 0
    assert "synced sample_task" in synced.stdout
    assert "disabled one_shot" in synced.stdout
    listed = cli.invoke(app, ["types", "list"])
    assert "sample_task" in listed.stdout
    swept = cli.invoke(app, ["sweep"])
    assert swept.exit_code == 0
    assert set(json.loads(swept.stdout)) >= {"rescued", "dispatched", "pruned"}


# -- the dev stack as a process ------------------------------------------------------------------


@pytest.fixture
def dev_ports() -> Iterator[tuple[Path, int, int]]:
    data = Path(tempfile.mkdtemp(prefix="jobhook-dev-"))
    ports = (free_port(), free_port())
    yield data, *ports
    # Whatever a failed test left running goes: the stack's processes, then its database.
    while STARTED:
        process = STARTED.pop()
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(10)
    Cluster(data, port=ports[0]).destroy()


STARTED: list[subprocess.Popen[bytes]] = []


def start_dev(data: Path, db_port: int, app_port: int) -> subprocess.Popen[bytes]:
    command = [sys.executable, "-m", "jobhook.cli", "dev", "--data-dir", str(data)]
    command += ["--db-port", str(db_port), "--app-port", str(app_port)]
    output = data / "dev.log"
    with output.open("ab") as log:
        process = subprocess.Popen(  # noqa: S603
            command,
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "JOBHOOK_WEBHOOK_SECRETS": ""},
            start_new_session=True,
        )
    STARTED.append(process)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        assert process.poll() is None, output.read_text()
        try:
            if httpx.get(f"http://127.0.0.1:{app_port}/ready", timeout=1).status_code == 200:
                return process
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    process.kill()
    raise AssertionError("the dev stack did not become ready")


def wait_for_output(log: Path, text: str, within: float = 30) -> str:
    """The log once `text` is in it: the stack prints its URLs just after it is ready."""
    deadline = time.monotonic() + within
    while text not in (output := log.read_text()):
        assert time.monotonic() < deadline, f"never printed {text!r}:\n{output}"
        time.sleep(0.05)
    return output


def run_one_job(db_port: int) -> None:
    url = f"postgresql://postgres:postgres@127.0.0.1:{db_port}/postgres"
    job_id = insert_job(url, "sample_task", {"steps": 1, "step_seconds": 0})
    with psycopg.connect(url, autocommit=True) as conn:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            row = conn.execute("select status from public.jobs where id = %s", (job_id,)).fetchone()
            if row == ("completed",):
                return
            time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not complete: {row}")


@pytest.mark.e2e
def test_dev_runs_jobs_and_one_ctrl_c_stops_everything(dev_ports: tuple[Path, int, int]) -> None:
    data, db_port, app_port = dev_ports
    process = start_dev(data, db_port, app_port)
    run_one_job(db_port)
    # The stack says where it is; the client verbs find it there, whatever its ports.
    record = json.loads((data / "stack.json").read_text())
    assert record["database_url"].endswith(f":{db_port}/postgres")
    assert record["app_url"] == f"http://127.0.0.1:{app_port}"
    # Both roles, as on hosted Supabase: postgres for the app and the migrations, and the
    # superuser, labelled so.
    database = f"postgresql://postgres:postgres@127.0.0.1:{db_port}/postgres"
    superuser = f"postgresql://supabase_admin:postgres@127.0.0.1:{db_port}/postgres"
    assert (record["database_url"], record["admin_url"]) == (database, superuser)
    printed = wait_for_output(data / "dev.log", "superuser ")
    assert f"  database  {database}\n" in printed
    assert f"  superuser {superuser}\n" in printed
    listed = cli_process.run("jobs", "list", "--json", data_dir=data)
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout)["total"] == 1
    assert f"127.0.0.1:{db_port}/postgres (the dev stack recorded in" in listed.stderr
    refused = cli_process.run("reset", "--yes", data_dir=data)
    assert "the dev stack is running from" in cli_process.explained(refused)

    process.send_signal(signal.SIGINT)
    assert process.wait(timeout=30) == 0
    assert not port_is_listening(db_port)
    assert not port_is_listening(app_port)
    assert not (data / "stack.json").exists()


@pytest.mark.e2e
def test_dev_recovers_after_everything_is_killed(dev_ports: tuple[Path, int, int]) -> None:
    data, db_port, app_port = dev_ports
    process = start_dev(data, db_port, app_port)
    postmaster = int((data / "pgdata" / "postmaster.pid").read_text().split()[0])
    os.killpg(process.pid, signal.SIGKILL)
    os.kill(postmaster, signal.SIGKILL)
    process.wait(timeout=10)
    deadline = time.monotonic() + 10
    while port_is_listening(db_port) and time.monotonic() < deadline:
        time.sleep(0.05)

    process = start_dev(data, db_port, app_port)
    try:
        run_one_job(db_port)
    finally:
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=30) == 0


@pytest.mark.e2e
def test_demo_runs_sample_jobs_end_to_end_and_stops(dev_ports: tuple[Path, int, int]) -> None:
    data, db_port, app_port = dev_ports
    command = [sys.executable, "-m", "jobhook.cli", "demo", "--data-dir", str(data)]
    command += ["--db-port", str(db_port), "--app-port", str(app_port)]
    result = subprocess.run(command, capture_output=True, text=True, timeout=180, check=False)  # noqa: S603
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert "23 of 23 jobs completed" in result.stdout
    assert "insert-to-start latency over" in result.stdout
    assert "the retried job kept its first error" in result.stdout
    # The planned failure is logged to a file, not into the bars; the end says what is next.
    assert "WARNING" not in result.stdout + result.stderr
    assert "warning" not in result.stdout.lower()
    assert "handler failed" in (data / "demo.log").read_text()
    assert "make dev" in result.stdout.split("next")[-1]
    assert "docs/quickstart.md" in result.stdout
    assert not port_is_listening(db_port)
    assert not port_is_listening(app_port)

    # `jobhook reset` asks first, then drops the dev data.
    kept = cli_process.run("reset", "--db-port", str(db_port), data_dir=data, stdin="n\n")
    assert "nothing was dropped" in cli_process.explained(kept)
    assert (data / "pgdata").exists()
    dropped = cli_process.run("reset", "--db-port", str(db_port), "--yes", data_dir=data)
    assert dropped.returncode == 0, dropped.stderr
    assert "dropped the dev data" in dropped.stdout
    assert not data.exists()
