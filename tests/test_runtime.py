"""Jobs through the real pieces: trigger, pg_net stand-in, signed webhook, runner, write-back."""

from __future__ import annotations

import asyncio
import json
import re
from collections.abc import Callable
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from prometheus_client import REGISTRY

from jobhook import vault
from jobhook.devstack.stack import Served
from jobhook.runner import UNEXPECTED
from tests import handlers_for_tests
from tests.conftest import (
    DEMO_USER,
    Receiver,
    Stack,
    act_as_user,
    finished,
    insert_job,
    wait_for_job,
)

pytestmark = pytest.mark.commits


def lost_attempts(job_type: str) -> float:
    value = REGISTRY.get_sample_value(
        "jobhook_jobs_finished_total", {"job_type": job_type, "outcome": "lost"}
    )
    return value or 0.0


async def test_a_users_insert_runs_to_completion_with_progress_and_result(
    committed: Stack, app_stack: Served
) -> None:
    job_id = insert_job(
        committed.url, "sample_task", {"steps": 3, "step_seconds": 0.02, "result": {"echo": [1, 2]}}
    )
    row = await wait_for_job(committed.url, job_id, finished)
    assert row["status"] == "completed"
    assert row["progress"] == 100
    assert row["progress_message"] == "step 3 of 3"
    assert row["result"] == {"steps": 3, "attempt": 1, "result": {"echo": [1, 2]}}
    assert row["attempt"] == 1
    assert row["errors"] == []
    assert row["user_id"] == UUID(DEMO_USER)
    # The owner reads the row: the runner's name on it says nothing of its host or process.
    assert re.fullmatch(r"runner-[0-9a-f]{12}", row["worker_id"])


async def test_progress_is_visible_on_the_row_while_the_job_runs(
    committed: Stack, app_stack: Served
) -> None:
    job_id = insert_job(committed.url, "sample_task", {"steps": 4, "step_seconds": 0.3})
    row = await wait_for_job(committed.url, job_id, lambda r: 0 < r["progress"] < 100)
    assert row["status"] == "processing"
    assert row["progress_message"].startswith("step ")
    await wait_for_job(committed.url, job_id, finished)


async def test_a_retry_keeps_its_error_and_succeeds_on_attempt_2(
    committed: Stack, app_stack: Served
) -> None:
    job_id = insert_job(
        committed.url, "sample_task", {"steps": 1, "step_seconds": 0, "fail_times": 1}
    )
    row = await wait_for_job(committed.url, job_id, finished)
    assert (row["status"], row["attempt"]) == ("completed", 2)
    [error] = row["errors"]
    assert error["attempt"] == 1
    assert error["kind"] == "error"
    assert error["message"] == "failing attempt 1 of the first 1, as asked"
    assert row["error"] is None


async def test_invalid_parameters_fail_at_once_naming_the_field(
    committed: Stack, app_stack: Served
) -> None:
    # Created under an older model that took anything (the insert check passes it): the
    # runner checks the payload against today's model.
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute("update jobhook.job_types set params_schema = '{}' where name = 'sample_task'")
    job_id = insert_job(committed.url, "sample_task", {"steps": 0, "step_seconds": "slow"})
    row = await wait_for_job(committed.url, job_id, finished)
    assert (row["status"], row["attempt"]) == ("failed", 1)
    assert row["error"].startswith("invalid parameters: ")
    assert "steps: Input should be greater than or equal to 1 (got 0)" in row["error"]
    assert "step_seconds:" in row["error"]
    assert row["errors"][0]["kind"] == "invalid_parameters"


async def test_a_permanent_error_is_not_retried(committed: Stack, app_stack: Served) -> None:
    job_id = insert_job(committed.url, "refuses")
    row = await wait_for_job(committed.url, job_id, finished)
    assert (row["status"], row["attempt"]) == ("failed", 1)
    assert row["error"] == "the input can never work: nothing to do"


@pytest.mark.parametrize(
    ("job_type", "payload", "error", "kind"),
    [
        # Past its own 1 s timeout: stopped, and the timeout is the error.
        ("slow", {"seconds": 30}, "timed out after 1 s", "timeout"),
        # A TimeoutError of the handler's own is its error, not the job's timeout.
        ("upstream_timeout", {}, UNEXPECTED, "error"),
    ],
)
async def test_a_timeout_fails_the_job_saying_whose_it_was(
    committed: Stack,
    app_stack: Served,
    job_type: str,
    payload: dict[str, Any],
    error: str,
    kind: str,
) -> None:
    job_id = insert_job(committed.url, job_type, payload)
    row = await wait_for_job(committed.url, job_id, finished)
    assert row["status"] == "failed"
    assert row["error"] == error
    assert row["errors"][0]["kind"] == kind


async def test_a_result_the_database_cannot_store_fails_only_its_own_job(
    committed: Stack, app_stack: Served
) -> None:
    with psycopg.connect(committed.url) as conn:
        act_as_user(conn, DEMO_USER)
        rows = conn.execute(
            "insert into public.jobs (job_type, payload)"
            " select 'odd_result', jsonb_build_object('kind', k)"
            " from unnest(array['nan', 'fine', 'nul', 'fine']) k returning id, payload ->> 'kind'"
        ).fetchall()
    outcomes: dict[str, set[tuple[str, int]]] = {}
    for job_id, kind in rows:
        row = await wait_for_job(committed.url, job_id, finished)
        outcomes.setdefault(kind, set()).add((row["status"], row["attempt"]))
    assert outcomes["fine"] == {("completed", 1)}
    assert outcomes["nan"] == {("failed", 1)}
    assert outcomes["nul"] == {("failed", 1)}


async def test_a_blocking_handler_runs_in_a_thread(committed: Stack, app_stack: Served) -> None:
    job_id = insert_job(committed.url, "blocking")
    row = await wait_for_job(committed.url, job_id, finished)
    assert (row["status"], row["result"]) == ("completed", {"ran": "in a thread"})


async def test_a_delayed_job_starts_once_due(committed: Stack, app_stack: Served) -> None:
    job_id = insert_job(
        committed.url,
        "sample_task",
        {"steps": 1, "step_seconds": 0},
        run_at_sql="now() + interval '1.5 seconds'",
    )
    pending = await wait_for_job(committed.url, job_id, lambda r: True)
    assert pending["status"] == "pending"
    row = await wait_for_job(committed.url, job_id, finished)
    assert row["status"] == "completed"
    assert row["started_at"] >= pending["run_at"]


async def test_cancel_while_pending(committed: Stack, app_stack: Served) -> None:
    job_id = insert_job(committed.url, "sample_task", run_at_sql="now() + interval '1 hour'")
    with psycopg.connect(committed.url) as conn:
        act_as_user(conn, DEMO_USER)
        conn.execute("update public.jobs set cancel_requested_at = now() where id = %s", (job_id,))
    row = await wait_for_job(committed.url, job_id, finished, within=1)
    assert row["status"] == "cancelled"
    assert row["attempt"] == 0


async def test_cancel_while_running_stops_the_handler(committed: Stack, app_stack: Served) -> None:
    job_id = insert_job(committed.url, "sample_task", {"steps": 200, "step_seconds": 0.05})
    await wait_for_job(committed.url, job_id, lambda r: r["progress"] > 0)
    with psycopg.connect(committed.url) as conn:
        act_as_user(conn, DEMO_USER)
        conn.execute("update public.jobs set cancel_requested_at = now() where id = %s", (job_id,))
    row = await wait_for_job(committed.url, job_id, finished, within=10)
    assert row["status"] == "cancelled"
    assert row["progress"] < 100
    assert row["result"] is None


async def test_the_same_signed_delivery_8_times_at_once_runs_the_job_once(
    committed: Stack, app_stack: Served, receiver: Receiver
) -> None:
    # Capture a real delivery: point Vault at a recorder, insert, put Vault back.
    with psycopg.connect(committed.url, autocommit=True) as conn:
        app_url = vault.read(conn, vault.WEBHOOK_URL)
        vault.write(conn, vault.WEBHOOK_URL, receiver.url)
    job_id = insert_job(committed.url, "recorded")
    [delivery] = await asyncio.to_thread(receiver.wait_for, 1)
    with psycopg.connect(committed.url, autocommit=True) as conn:
        vault.write(conn, vault.WEBHOOK_URL, str(app_url))

    async with httpx.AsyncClient() as client:
        replies = await asyncio.gather(
            *(
                client.post(
                    f"{app_stack.url}/webhooks/jobs",
                    content=delivery.body,
                    headers={k: v for k, v in delivery.headers.items() if k.startswith("webhook-")}
                    | {"content-type": "application/json"},
                )
                for _ in range(8)
            )
        )
    assert [r.status_code for r in replies] == [202] * 8
    row = await wait_for_job(committed.url, job_id, finished)
    assert (row["status"], row["attempt"]) == ("completed", 1)
    with psycopg.connect(committed.url) as conn:
        runs = conn.execute(
            "select attempt from public.test_executions where job_id = %s", (job_id,)
        ).fetchall()
    assert runs == [(1,)]


async def test_a_runner_that_lost_its_lease_cannot_overwrite_the_newer_attempt(
    committed: Stack, app_stack: Served
) -> None:
    job_id = insert_job(committed.url, "gated", {"key": "lease", "block_attempts": [1]})
    await wait_for_job(committed.url, job_id, lambda r: r["status"] == "processing")
    # The runner of attempt 1 is stuck; its lease runs out and the sweep hands the job on.
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute(
            "update public.jobs set lease_expires_at = now() - interval '1 second' where id = %s",
            (job_id,),
        )
        conn.execute("select jobhook.sweep()")
        conn.execute("update public.jobs set run_at = now() where id = %s", (job_id,))
    row = await wait_for_job(committed.url, job_id, finished)
    assert (row["status"], row["attempt"], row["result"]) == ("completed", 2, {"attempt": 2})

    # Now the first runner wakes up and tries to complete attempt 1: the database refuses.
    lost_before = lost_attempts("gated")
    handlers_for_tests.gates[("lease", 1)].set()
    async with asyncio.timeout(10):
        # The runner reports the refused write only through its metrics: poll them.
        while lost_attempts("gated") == lost_before:  # noqa: ASYNC110
            await asyncio.sleep(0.01)
    assert handlers_for_tests.started["lease"] == [1, 2]
    final = await wait_for_job(committed.url, job_id, finished)
    assert (final["status"], final["attempt"], final["result"]) == ("completed", 2, {"attempt": 2})
    assert [e["kind"] for e in final["errors"]] == ["lease_expired"]


async def test_a_full_executor_queues_then_leaves_jobs_pending_for_the_sweep(
    committed: Stack, app_stack: Served
) -> None:
    executor = app_stack.app.state.runtime.executor
    executor.max_concurrency = 1
    executor.max_waiting = 1
    running = insert_job(committed.url, "gated", {"key": "full-1", "block_attempts": [1]})
    await wait_for_job(committed.url, running, lambda r: r["status"] == "processing")
    waiting = insert_job(committed.url, "gated", {"key": "full-2", "block_attempts": []})
    # One at a time: concurrent deliveries may arrive in either order.
    await delivery_replies(committed.url, 2)
    refused = insert_job(committed.url, "gated", {"key": "full-3", "block_attempts": []})
    # The third doorbell is answered "deferred": the job stays pending in the database.
    replies = await delivery_replies(committed.url, 3)
    assert replies[2] == {"accepted": 0, "deferred": 1}
    assert (await wait_for_job(committed.url, refused, lambda r: True))["status"] == "pending"

    # Room again: the waiting job runs from the line; the refused one when the sweep rings.
    executor.max_concurrency = 10
    handlers_for_tests.gates[("full-1", 1)].set()
    assert (await wait_for_job(committed.url, waiting, finished))["status"] == "completed"
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute(
            "update public.jobs set dispatched_at = now() - interval '1 hour' where id = %s",
            (refused,),
        )
        conn.execute("select jobhook.sweep()")
    assert (await wait_for_job(committed.url, refused, finished))["status"] == "completed"


async def delivery_replies(database_url: str, count: int) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        async with asyncio.timeout(10):
            while True:
                cursor = await conn.execute("select content from net._http_response order by id")
                rows = await cursor.fetchall()
                if len(rows) >= count:
                    return [json.loads(row[0]) for row in rows]
                await asyncio.sleep(0.02)


def test_types_are_synced_from_the_registry(committed: Stack, app_stack: Served) -> None:
    with psycopg.connect(committed.url) as conn:
        rows: dict[str, tuple[bool, bool | None]] = {
            name: (enabled, served)
            for name, enabled, served in conn.execute(
                "select name, enabled, served_until > now() from jobhook.job_types"
            )
        }
    # Written as served by this deployment, which renews them while it lives.
    assert rows["sample_task"] == (True, True)
    assert rows["gated"] == (True, True)
    # one_shot was written by hand, and no deployment manages it: left as it is (a type a
    # deployment stopped serving is disabled: tests/test_registry.py).
    assert rows["one_shot"] == (True, None)


async def test_what_an_unexpected_exception_says_reaches_the_logs_not_the_owner(
    committed: Stack, app_stack: Served, json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    job_id = insert_job(committed.url, "upstream_timeout", {})
    row = await wait_for_job(committed.url, job_id, finished)
    detail = "the upstream API did not answer within 5 s"
    assert (row["error"], [e["message"] for e in row["errors"]]) == (UNEXPECTED, [UNEXPECTED])
    assert detail not in json.dumps(row, default=str)
    [line] = [line for line in json_logs() if line["event"] == "handler failed unexpectedly"]
    assert (line["job_id"], line["error"]) == (str(job_id), f"TimeoutError: {detail}")
    assert "Traceback" in line["exception"]


async def test_a_user_deleted_while_their_job_runs_costs_no_error(
    committed: Stack, app_stack: Served, json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    leaving = "00000000-0000-4000-8000-0000000000d1"
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute(
            "insert into auth.users (id, email) values (%s, 'leaving@example.com')", (leaving,)
        )
    job_id = insert_job(
        committed.url, "gated", {"key": "deleted-user", "block_attempts": [1]}, user_id=leaving
    )
    await wait_for_job(committed.url, job_id, lambda row: row["status"] == "processing")
    with psycopg.connect(committed.url, autocommit=True) as conn:
        # The job goes with its user (on delete cascade).
        conn.execute("delete from auth.users where id = %s", (leaving,))
    lost_before = lost_attempts("gated")
    handlers_for_tests.gates[("deleted-user", 1)].set()
    async with asyncio.timeout(10):
        while lost_attempts("gated") == lost_before:  # noqa: ASYNC110 - a metric, no event
            await asyncio.sleep(0.02)
    with psycopg.connect(committed.url, autocommit=True) as conn:
        [(summary,)] = conn.execute("select jobhook.sweep()").fetchall()
        assert conn.execute("select count(*) from public.jobs").fetchone() == (0,)
    assert summary["rescued"] == 0
    assert [line for line in json_logs() if line["level"] in ("error", "critical")] == []


async def test_a_cancelled_error_of_the_handlers_own_is_a_failure_not_a_release(
    committed: Stack, app_stack: Served
) -> None:
    job_id = insert_job(committed.url, "cancels_itself", {})
    row = await wait_for_job(committed.url, job_id, finished)
    # Released, it would come back at once with one more attempt, again and again.
    assert (row["status"], row["attempt"], row["max_attempts"]) == ("failed", 1, 1)
    assert [(e["kind"], e["message"]) for e in row["errors"]] == [("error", UNEXPECTED)]
