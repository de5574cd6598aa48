"""The per-user quota holds under concurrent inserts, which cannot see each other's rows."""

from __future__ import annotations

import threading
from typing import Any

import psycopg
import pytest

from tests.conftest import DEMO_USER, Stack, act_as_user

pytestmark = pytest.mark.commits


def test_parallel_inserts_cannot_pass_the_quota_together(committed: Stack) -> None:
    with psycopg.connect(committed.url, autocommit=True) as admin:
        admin.execute("update jobhook.settings set max_unfinished_per_user = 3")
    outcome: dict[str, Any] = {}

    with psycopg.connect(committed.url) as first, psycopg.connect(committed.url) as second:
        act_as_user(first, DEMO_USER)
        first.execute(
            "insert into public.jobs (job_type, run_at)"
            " select 'sample_task', now() + interval '1 hour' from generate_series(1, 3)"
        )

        def insert_more() -> None:
            act_as_user(second, DEMO_USER)
            try:
                second.execute(
                    "insert into public.jobs (job_type, run_at)"
                    " values ('sample_task', now() + interval '1 hour')"
                )
                second.commit()
                outcome["second"] = "committed"
            except psycopg.Error as exc:
                second.rollback()
                outcome["second"] = exc.diag.message_primary

        racer = threading.Thread(target=insert_more)
        racer.start()
        # The second insert waits for the first transaction: it must not count without it.
        racer.join(timeout=1)
        assert racer.is_alive(), f"the second insert did not wait: {outcome}"
        first.commit()
        racer.join(timeout=10)

    assert outcome["second"] == "too many unfinished jobs: 4 pending or processing, the limit is 3"
    with psycopg.connect(committed.url) as conn:
        assert conn.execute("select count(*) from public.jobs").fetchone() == (3,)
