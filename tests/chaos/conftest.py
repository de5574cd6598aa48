"""The chaos suite's own cluster: it gets restarted, so it cannot be the one all other tests share.

Timers are shortened where the platform allows (a 5 s lease, re-dispatch after 5 s) and every
wait is on a condition with a bound, never a fixed sleep.
"""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from jobhook import vault
from jobhook.devstack import database
from jobhook.devstack.cluster import Cluster, free_port

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Chaos:
    cluster: Cluster
    app_port: int
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)

    @property
    def url(self) -> str:
        return self.cluster.url

    def start_app(
        self, *, delivery: bool = True, environment: dict[str, str] | None = None
    ) -> subprocess.Popen[bytes]:
        """The app (and the delivery worker) in a process of its own; ready when returned."""
        command = [sys.executable, "-m", "tests.chaos.app_process", self.url]
        command += [self.cluster.admin_url, str(self.app_port)]
        if not delivery:
            command.append("--no-delivery")
        log = (self.cluster.root / "app.log").open("ab")
        process = subprocess.Popen(  # noqa: S603
            command,
            cwd=ROOT,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            env={**os.environ, **(environment or {})},
        )
        log.close()
        self.processes.append(process)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            assert process.poll() is None, (self.cluster.root / "app.log").read_text()[-3000:]
            try:
                reply = httpx.get(f"http://127.0.0.1:{self.app_port}/ready", timeout=1)
                if reply.status_code == 200:
                    return process
            except httpx.HTTPError:
                pass
            time.sleep(0.05)
        raise AssertionError("the app did not become ready")

    def kill(self, process: subprocess.Popen[bytes]) -> None:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)

    def interrupt(self, process: subprocess.Popen[bytes], *, within: float = 30) -> int:
        """Ctrl-C, as a terminal sends it (or a deploy's SIGTERM): wait for a clean exit."""
        os.killpg(process.pid, signal.SIGINT)
        return process.wait(within)

    def sql(self, query: str, params: Any = None) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            cursor = conn.execute(query, params)
            return cursor.fetchall() if cursor.description else []


@pytest.fixture(scope="module")
def chaos_cluster() -> Iterator[Cluster]:
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="jobhook-chaos-")), port=free_port())
    cluster.start()
    try:
        database.prepare(cluster.url, admin_url=cluster.admin_url)
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute(
                "select cron.alter_job(jobid, active := false) from cron.job"
                " where jobname = 'jobhook-sweep'"
            )
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def chaos(chaos_cluster: Cluster) -> Iterator[Chaos]:
    state = Chaos(chaos_cluster, free_port())
    with psycopg.connect(chaos_cluster.url, autocommit=True) as conn:
        conn.execute(
            "truncate public.jobs, net.http_request_queue, net._http_response;"
            " delete from jobhook.settings; insert into jobhook.settings default values;"
            " update jobhook.settings set lease_seconds = 5, redispatch_after_seconds = 5,"
            "   max_unfinished_per_user = 100000;"
            " create table if not exists public.chaos_executions"
            "   (job_id uuid, attempt int, at timestamptz default clock_timestamp());"
            " truncate public.chaos_executions;"
        )
        vault.write(conn, vault.WEBHOOK_URL, f"http://127.0.0.1:{state.app_port}/webhooks/jobs")
    os.environ["CHAOS_DATABASE_URL"] = chaos_cluster.url
    try:
        yield state
    finally:
        for process in state.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(10)


async def eventually(
    check: Callable[[], Awaitable[bool]] | Callable[[], bool], *, within: float, what: str
) -> None:
    """Wait until `check()` holds, polling; fail saying `what` did not happen."""
    deadline = time.monotonic() + within
    while True:
        outcome = check()
        if asyncio.iscoroutine(outcome):
            outcome = await outcome
        if outcome:
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"{what} did not happen within {within} s")
        await asyncio.sleep(0.05)


@pytest.fixture
async def in_process_stack(chaos: Chaos) -> AsyncIterator[Any]:
    """The delivery worker and the app in this process (for cases that kill neither)."""
    from functions.app import create_app
    from jobhook.config import Settings
    from jobhook.devstack.stack import serve
    from tests.chaos.handlers import registry
    from tests.conftest import LOCAL_STACK

    settings = Settings(DATABASE_URL=chaos.url, **LOCAL_STACK)  # type: ignore[arg-type]
    app = create_app(settings, job_registry=registry, configure_logging=False)
    delivery_url = chaos.cluster.admin_url
    async with serve(settings, delivery_url=delivery_url, port=chaos.app_port, app=app) as served:
        yield served
