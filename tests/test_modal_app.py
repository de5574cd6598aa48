"""modal_app without Modal: it imports with no credentials, its functions run with .local(),
and its web function serves the same app, whose executor is swapped by dependency override."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from functions.deps import get_executor
from jobhook.doorbell import DispatchedJob
from jobhook.executor import ModalExecutor
from jobhook.registry import registry
from tests.conftest import Stack, insert_job
from tests.test_webhook_security import dispatch_body, signed

PROJECT_DIR = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.commits


def test_it_imports_without_credentials() -> None:
    assert not os.environ.get("MODAL_TOKEN_ID")
    import modal_app

    assert modal_app.app.name == "jobhook"
    assert set(modal_app.RUNNERS) == {"cpu", "gpu", "browser", "llm"}
    assert modal_app.tier_timeout("cpu") >= registry.get("sample_task").timeout_seconds  # type: ignore[union-attr]


async def test_the_cpu_runner_runs_a_job_with_local(
    committed: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modal_app

    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute("update jobhook.job_types set enabled = true")
        conn.execute(
            "insert into jobhook.job_types (name) values ('sample_task') on conflict do nothing"
        )
        # No doorbell: this test plays the part of the web function that would have spawned.
        conn.execute("delete from vault.secrets where name = 'jobhook_webhook_url'")
    job_id = insert_job(
        committed.url, "sample_task", {"steps": 2, "step_seconds": 0, "result": "modal"}
    )
    monkeypatch.setenv("DATABASE_URL", committed.url)

    outcomes = await modal_app.run_cpu.local([str(job_id)])
    assert outcomes == ["completed"]
    # A second spawn with the same id (a retried input) runs nothing.
    assert await modal_app.run_cpu.local([str(job_id)]) == []
    with psycopg.connect(committed.url) as conn:
        row = conn.execute(
            "select status, result from public.jobs where id = %s", (job_id,)
        ).fetchone()
    assert row == ("completed", {"steps": 2, "attempt": 1, "result": "modal"})


@dataclass
class Recorder:
    submitted: list[DispatchedJob] = field(default_factory=list)

    async def submit(self, jobs: Sequence[DispatchedJob]) -> list[DispatchedJob]:
        self.submitted.extend(jobs)
        return []

    async def aclose(self) -> None:
        return None


async def test_the_web_function_serves_the_app_with_a_modal_executor(
    committed: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    import modal_app

    monkeypatch.setenv("DATABASE_URL", committed.url)
    web = modal_app.api.local()
    recorder = Recorder()
    async with web.router.lifespan_context(web):
        assert isinstance(web.state.runtime.executor, ModalExecutor)
        await web.state.runtime.wait_ready()
        web.dependency_overrides[get_executor] = lambda: recorder
        body = dispatch_body()
        async with httpx.AsyncClient(
            transport=httpx.ASGITransport(app=web), base_url="http://modal"
        ) as client:
            health = await client.get("/health")
            reply = await client.post(
                "/webhooks/jobs", content=body, headers=signed(committed.webhook_secret, body)
            )
    assert health.json() == {"status": "ok"}
    assert reply.status_code == 202
    assert [job.job_type for job in recorder.submitted] == ["sample_task"]


@dataclass
class SpawnRecorder:
    """Stands in for a hydrated modal.Function: records what `.spawn.aio` was given."""

    calls: list[list[str]] = field(default_factory=list)

    @property
    def spawn(self) -> Any:
        return self

    async def aio(self, job_ids: list[str]) -> None:
        self.calls.append(job_ids)


async def test_the_modal_executor_spawns_one_drain_per_tier_per_doorbell() -> None:
    from uuid import uuid4

    from handlers.sample_task import SampleParams, sample_task
    from jobhook.registry import JobType, Registry

    local = Registry()
    local.add(JobType("cpu_job", sample_task, SampleParams))
    local.add(JobType("gpu_job", sample_task, SampleParams, tier="gpu"))
    local.add(JobType("odd_job", sample_task, SampleParams, tier="quantum"))
    cpu, gpu = SpawnRecorder(), SpawnRecorder()
    executor = ModalExecutor({"cpu": cpu, "gpu": gpu}, local)
    jobs = [DispatchedJob(id=uuid4(), job_type="cpu_job") for _ in range(5)] + [
        DispatchedJob(id=uuid4(), job_type="gpu_job")
    ]
    odd = DispatchedJob(id=uuid4(), job_type="odd_job")
    refused = await executor.submit([*jobs, odd])
    assert refused == [odd]
    # One spawn per tier, whatever the number of ids: the runner drains (jobhook.worker).
    assert cpu.calls == [[str(job.id) for job in jobs[:5]]]
    assert gpu.calls == [[str(jobs[5].id)]]


async def test_a_failed_spawn_leaves_the_jobs_pending_for_the_sweep() -> None:
    from uuid import uuid4

    from handlers.sample_task import SampleParams, sample_task
    from jobhook.registry import JobType, Registry

    class Unavailable:
        @property
        def spawn(self) -> Any:
            return self

        async def aio(self, job_ids: list[str]) -> None:
            raise ConnectionError("Modal is unreachable")

    local = Registry()
    local.add(JobType("cpu_job", sample_task, SampleParams))
    jobs = [DispatchedJob(id=uuid4(), job_type="cpu_job") for _ in range(3)]
    refused = await ModalExecutor({"cpu": Unavailable()}, local).submit(jobs)
    assert refused == jobs


RUN_CPU_LOCALLY = """
import asyncio, sys
import modal_app
asyncio.run(modal_app.run_cpu.local(sys.argv[1:]))
"""


async def test_a_runner_function_stopped_with_sigint_releases_its_attempt(
    committed: Stack,
) -> None:
    """Modal stops a container with SIGINT, which cancels each running input; asyncio.run does
    the same with the input run by `.local()` here. The attempt is handed back, not spent."""
    import asyncio
    import signal
    import sys

    from tests.conftest import wait_for_job

    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute("delete from vault.secrets where name = 'jobhook_webhook_url'")
    job_id = insert_job(committed.url, "sample_task", {"steps": 600, "step_seconds": 0.1})
    runner = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        RUN_CPU_LOCALLY,
        str(job_id),
        cwd=PROJECT_DIR,
        env={**os.environ, "DATABASE_URL": committed.url, "JOBHOOK_SHUTDOWN_GRACE_SECONDS": "0.5"},
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        await wait_for_job(committed.url, job_id, lambda row: row["progress"] > 0, within=30)
        runner.send_signal(signal.SIGINT)
        _, stderr = await asyncio.wait_for(runner.communicate(), 30)
    finally:
        if runner.returncode is None:
            runner.kill()
    row = await wait_for_job(committed.url, job_id, lambda row: row["status"] != "processing")
    assert (row["status"], row["attempt"], row["max_attempts"]) == ("pending", 1, 4), stderr
    assert [e["kind"] for e in row["errors"]] == ["released"]
