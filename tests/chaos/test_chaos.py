"""Every job survives: crashes, outages and abuse end with each job in a final state, and no
attempt runs twice.

Each case is bounded in time and waits on conditions. What each one rests on is written up in
docs/reliability.md.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import psycopg
import pytest

from jobhook.devstack.delivery import DeliveryWorker
from tests.chaos.conftest import Chaos, eventually
from tests.conftest import DEMO_USER

pytestmark = pytest.mark.commits

CLAIMS = json.dumps({"sub": DEMO_USER, "role": "authenticated"})


def enqueue(chaos: Chaos, job_type: str, payloads: list[dict[str, Any]]) -> list[str]:
    """Insert the jobs in one statement as the demo user, as supabase-js would."""
    with psycopg.connect(chaos.url) as conn:
        conn.execute("select set_config('request.jwt.claims', %s, true)", (CLAIMS,))
        conn.execute("set local role authenticated")
        rows = conn.execute(
            "insert into public.jobs (job_type, payload)"
            " select %s, p from unnest(%s::jsonb[]) p returning id",
            (job_type, [json.dumps(p) for p in payloads]),
        ).fetchall()
        return [str(row[0]) for row in rows]


def statuses(chaos: Chaos) -> dict[str, int]:
    return dict(chaos.sql("select status::text, count(*)::int from public.jobs group by 1"))


def executions(chaos: Chaos) -> list[tuple[str, int, int]]:
    """(job, attempt, times it ran) for every attempt that ran."""
    return [
        (str(job), attempt, runs)
        for job, attempt, runs in chaos.sql(
            "select job_id, attempt, count(*)::int from public.chaos_executions group by 1, 2"
        )
    ]


async def completes(chaos: Chaos, job: str, *, what: str) -> None:
    def done() -> bool:
        [(status,)] = chaos.sql("select status::text from public.jobs where id = %s", (job,))
        return bool(status == "completed")

    await eventually(done, within=30, what=what)


def sweep_once_leases_expire(chaos: Chaos) -> bool:
    expired = chaos.sql(
        "select count(*) from public.jobs where status = 'processing' and lease_expires_at < now()"
    )[0][0]
    if expired:
        chaos.sql("select jobhook.sweep()")
    return bool(expired)


async def test_app_killed_mid_job_is_rescued_and_completed_on_the_next_attempt(
    chaos: Chaos,
) -> None:
    app = chaos.start_app()
    [job] = enqueue(chaos, "sleepy", [{"seconds": 60, "sleep_on_attempts": [1]}])
    await eventually(
        lambda: chaos.sql("select progress from public.jobs where id = %s", (job,))[0][0] == 10,
        within=15,
        what="the job starting",
    )
    chaos.kill(app)

    # Nobody heartbeats any more: the lease runs out and the sweep takes the job back.
    await eventually(lambda: sweep_once_leases_expire(chaos), within=15, what="the lease expiring")
    [(status, errors)] = chaos.sql(
        "select status::text, errors from public.jobs where id = %s", (job,)
    )
    assert status == "pending"
    assert [(e["attempt"], e["kind"]) for e in errors] == [(1, "lease_expired")]

    chaos.start_app()
    await completes(chaos, job, what="attempt 2 completing")
    [(attempt, result)] = chaos.sql("select attempt, result from public.jobs where id = %s", (job,))
    assert (attempt, result) == (2, {"attempt": 2})
    assert sorted((a, n) for _, a, n in executions(chaos)) == [(1, 1), (2, 1)]


async def test_a_deploy_hands_running_jobs_back_and_the_next_app_finishes_them(
    chaos: Chaos,
) -> None:
    """Ctrl-C mid-job (what a deploy does with SIGTERM): the app stops taking work, gives the
    attempt its grace period, then releases it. The job has one attempt in its budget and a 5 s
    lease: it must neither fail nor wait for the lease, and run once more, to completion."""
    app = chaos.start_app(environment={"JOBHOOK_SHUTDOWN_GRACE_SECONDS": "0.5"})
    [job] = enqueue(chaos, "sleepy_once", [{"seconds": 60, "sleep_on_attempts": [1]}])
    await eventually(
        lambda: chaos.sql("select progress from public.jobs where id = %s", (job,))[0][0] == 10,
        within=15,
        what="the job starting",
    )
    assert chaos.interrupt(app) == 0
    [(status, attempt, max_attempts, errors)] = chaos.sql(
        "select status::text, attempt, max_attempts, errors from public.jobs where id = %s",
        (job,),
    )
    assert (status, attempt, max_attempts) == ("pending", 1, 2)
    assert [(e["attempt"], e["kind"]) for e in errors] == [(1, "released")]

    chaos.start_app()
    await completes(chaos, job, what="attempt 2 completing")
    [(attempt, max_attempts, errors)] = chaos.sql(
        "select attempt, max_attempts, errors from public.jobs where id = %s", (job,)
    )
    assert (attempt, max_attempts) == (2, 2)
    assert [e["kind"] for e in errors] == ["released"]  # no lease expiry, no failure
    assert sorted((a, n) for _, a, n in executions(chaos)) == [(1, 1), (2, 1)]


async def test_jobs_inserted_while_the_endpoint_is_down_are_redelivered(chaos: Chaos) -> None:
    # The delivery worker runs, the app does not: every doorbell meets a closed port.
    worker = DeliveryWorker(chaos.url)
    delivering = asyncio.create_task(worker.run())
    try:
        jobs = enqueue(chaos, "sleepy", [{"sleep_on_attempts": []} for _ in range(30)])
        await eventually(
            lambda: (
                chaos.sql("select count(*) from net._http_response where error_msg is not null")[0][
                    0
                ]
                >= 1
            ),
            within=15,
            what="the failed delivery being recorded",
        )
        assert statuses(chaos) == {"pending": 30}

        chaos.start_app(delivery=False)

        def redelivered() -> bool:
            # Once the last delivery is old enough to count as lost, the sweep rings again.
            chaos.sql("select jobhook.sweep()")
            return statuses(chaos) == {"completed": 30}

        await eventually(redelivered, within=40, what="every job completing after redelivery")
    finally:
        delivering.cancel()
    assert len(executions(chaos)) == len(jobs)
    assert all(runs == 1 for _, _, runs in executions(chaos))


async def test_requests_wait_in_the_queue_while_the_delivery_worker_is_down(chaos: Chaos) -> None:
    chaos.start_app(delivery=False)
    # Two inserts in a row, each with its own doorbell: above the pace's rate.
    chaos.sql("update jobhook.settings set max_doorbells_per_second = 10000")
    enqueue(chaos, "sleepy", [{"sleep_on_attempts": []} for _ in range(3)])
    enqueue(chaos, "sleepy", [{"sleep_on_attempts": []} for _ in range(2)])
    assert chaos.sql("select count(*) from net.http_request_queue")[0][0] == 2
    assert statuses(chaos) == {"pending": 5}

    delivering = asyncio.create_task(DeliveryWorker(chaos.url).run())
    try:
        await eventually(
            lambda: statuses(chaos) == {"completed": 5}, within=20, what="the queued jobs running"
        )
    finally:
        delivering.cancel()
    assert chaos.sql("select count(*) from net.http_request_queue")[0][0] == 0


@pytest.mark.timeout(180)
async def test_postgres_restarted_mid_run_loses_nothing(chaos: Chaos) -> None:
    chaos.start_app()
    jobs = enqueue(chaos, "sleepy", [{"seconds": 2, "sleep_on_attempts": [1]} for _ in range(20)])
    await eventually(
        lambda: statuses(chaos).get("processing", 0) == 20, within=20, what="all jobs starting"
    )
    # Every connection drops; the server comes back on the same port with the same data.
    await asyncio.to_thread(chaos.cluster.stop)
    await asyncio.to_thread(chaos.cluster.start)

    def all_final() -> bool:
        # Write-backs retry through the restart; whatever they could not save, the sweep rescues.
        sweep_once_leases_expire(chaos)
        chaos.sql("update public.jobs set run_at = now() where status = 'pending'")
        return statuses(chaos) == {"completed": len(jobs)}

    try:
        # Generous: write-backs may spend their 30 s of retries before the lease rescue starts.
        await eventually(all_final, within=90, what="every job completing after the restart")
    except AssertionError as exc:
        rows = chaos.sql(
            "select status::text, attempt, dispatch_count, dispatched_at < now() - interval '5 s',"
            " run_at <= now(), errors::text from public.jobs order by status"
        )
        app_log = (chaos.cluster.root / "app.log").read_text(errors="replace")[-4000:]
        raise AssertionError(f"{exc}\njobs: {rows}\napp log:\n{app_log}") from None
    for job, attempt, runs in executions(chaos):
        assert runs == 1, f"attempt {attempt} of {job} ran {runs} times"


# Its own wait is 240 s: the suite's 120 s default would cut it short on a slow machine.
@pytest.mark.timeout(300)
async def test_a_burst_of_10000_with_random_failures_runs_every_attempt_exactly_once(
    chaos: Chaos, in_process_stack: Any
) -> None:
    jobs = enqueue(chaos, "flaky", [{"n": n} for n in range(10_000)])

    def finished() -> bool:
        counts = statuses(chaos)
        return counts.get("pending", 0) + counts.get("processing", 0) == 0

    await eventually(finished, within=240, what="all 10,000 jobs finishing")
    counts = statuses(chaos)
    assert sum(counts.values()) == len(jobs)
    assert set(counts) <= {"completed", "failed"}

    final = {
        str(job): (status, attempt)
        for job, status, attempt in chaos.sql("select id, status::text, attempt from public.jobs")
    }
    ran: dict[str, list[int]] = {}
    for job, attempt, runs in executions(chaos):
        assert runs == 1, f"attempt {attempt} of {job} ran {runs} times"
        ran.setdefault(job, []).append(attempt)
    # Each job ran attempts 1..n exactly once, n being the attempt the row ended on.
    for job, (status, attempt) in final.items():
        assert sorted(ran[job]) == list(range(1, attempt + 1)), (
            job,
            status,
            ran[job],
            chaos.sql("select errors from public.jobs where id = %s", (job,)),
        )
    assert counts.get("failed", 0) < len(jobs) * 0.01  # 5 attempts at 30% failure: ~0.2%
