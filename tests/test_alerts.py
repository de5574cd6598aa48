"""Alerts reach a Slack-compatible webhook once per kind and interval, whoever watches."""

from __future__ import annotations

import json

import httpx
import psycopg
import pytest

from jobhook.alerts import REPLY_BURST, Alerter
from jobhook.config import Settings
from jobhook.store import Store
from tests.conftest import Receiver, Stack, insert_job

pytestmark = pytest.mark.commits


async def test_each_kind_is_sent_once_per_interval_across_watchers(
    committed: Stack, receiver: Receiver
) -> None:
    receiver.status = 200
    job_id = insert_job(committed.url, "one_shot")
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute("select jobhook.claim(array[%s]::uuid[], 'w')", (job_id,))
        conn.execute("select jobhook.fail(%s, 1, 'the input is broken', false, 'error')", (job_id,))
        waiting = insert_job(committed.url, "sample_task")
        # Due for 20 minutes and never started (no runner is up in this test).
        conn.execute(
            "update public.jobs set run_at = now() - interval '20 minutes' where id = %s",
            (waiting,),
        )
        conn.execute(
            "insert into net._http_response (id, status_code, error_msg)"
            " select n, null, 'Connection refused' from generate_series(1, %s) n",
            (REPLY_BURST,),
        )
        conn.execute(
            "insert into cron.job_run_details (jobid, runid, database, username, command, status,"
            " return_message, start_time, end_time)"
            " select jobid, 1, 'postgres', 'postgres', 'select jobhook.sweep()', 'failed',"
            " 'ERROR: deadlock detected', now(), now()"
            " from cron.job where jobname = 'jobhook-sweep'"
        )
    settings = Settings(
        DATABASE_URL=committed.url,
        JOBHOOK_ALERT_WEBHOOK_URL=receiver.url,
        JOBHOOK_ALERT_WAITING_SECONDS="300",
    )
    try:
        async with (
            Store.open(committed.url, min_size=1, max_size=2) as store,
            httpx.AsyncClient(trust_env=False) as client,
        ):
            first, second = Alerter(store, settings, client), Alerter(store, settings, client)
            sent = await first.check_once()
            assert {a.kind for a in sent} == {"failed_jobs", "sweep", "pg_net", "waiting"}
            # Another container seeing the same: its turn comes only after the interval.
            assert await second.check_once() == []
    finally:
        with psycopg.connect(committed.url, autocommit=True) as conn:
            conn.execute("delete from cron.job_run_details")
            conn.execute("delete from jobhook.alerts_sent")
    texts = [json.loads(r.body)["text"] for r in receiver.wait_for(4)]
    assert len(texts) == 4
    joined = "\n".join(texts)
    assert f"one_shot {job_id}: the input is broken" in joined
    assert "ERROR: deadlock detected" in joined
    assert f"{REPLY_BURST} doorbells failed" in joined
    assert f"a due sample_task job ({waiting}) has waited" in joined
