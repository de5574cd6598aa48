"""Progress writes are paced, and the last one folds into the completion: counted as Realtime
counts them, in the database's own change stream (logical decoding of public.jobs)."""

from __future__ import annotations

import secrets
from collections.abc import Iterator
from uuid import UUID

import psycopg
import pytest

from jobhook.config import Settings
from jobhook.runner import Outcome, Runner
from jobhook.runtime import new_runner
from tests import handlers_for_tests
from tests.conftest import Stack, insert_job

pytestmark = pytest.mark.commits

FIVE_STEPS = {"steps": 5, "step_seconds": 0.05}


class ChangeStream:
    """A logical replication slot (PostgreSQL's test_decoding plugin): every row change of the
    table in commit order, what Realtime's wal2json slot reads too."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.slot = f"jobhook_test_{secrets.token_hex(4)}"

    def __enter__(self) -> ChangeStream:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute(
                "select pg_create_logical_replication_slot(%s, 'test_decoding')", (self.slot,)
            )
        return self

    def __exit__(self, *exc: object) -> None:
        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("select pg_drop_replication_slot(%s)", (self.slot,))

    def updates_of(self, job_id: UUID) -> list[str]:
        with psycopg.connect(self.url, autocommit=True) as conn:
            rows = conn.execute(
                "select data from pg_logical_slot_get_changes(%s, null, null)", (self.slot,)
            ).fetchall()
        return [
            data
            for (data,) in rows
            if data.startswith("table public.jobs: UPDATE:") and f"id[uuid]:'{job_id}'" in data
        ]


@pytest.fixture
def changes(committed: Stack) -> Iterator[ChangeStream]:
    with ChangeStream(committed.url) as stream:
        yield stream


async def run(runner: Runner, job_id: UUID) -> Outcome:
    async with runner.store:
        [outcome] = await runner.run_many([job_id])
        await runner.completions.aclose()
    return outcome


async def test_a_five_step_job_updates_its_row_twice_claim_and_completion(
    committed: Stack, changes: ChangeStream
) -> None:
    job_id = insert_job(committed.url, "sample_task", FIVE_STEPS)
    runner = new_runner(
        Settings(DATABASE_URL=committed.url), handlers_for_tests.registry, min_connections=1
    )
    assert await run(runner, job_id) is Outcome.COMPLETED
    updates = changes.updates_of(job_id)
    assert len(updates) == 2, updates
    claim, completion = updates
    assert "status[job_status]:'processing'" in claim
    # The progress reported within the first second went out with the completion.
    assert "status[job_status]:'completed'" in completion
    assert "progress[smallint]:100" in completion
    assert "progress_message[text]:'step 5 of 5'" in completion


async def test_unpaced_the_same_job_writes_progress_on_its_own(
    committed: Stack, changes: ChangeStream
) -> None:
    """JOBHOOK_PROGRESS_INTERVAL_SECONDS=0 writes each report as it comes, as every runner did
    before progress was paced: more updates, each a Realtime message per subscriber."""
    job_id = insert_job(committed.url, "sample_task", FIVE_STEPS)
    settings = Settings(DATABASE_URL=committed.url, JOBHOOK_PROGRESS_INTERVAL_SECONDS=0)
    runner = new_runner(settings, handlers_for_tests.registry, min_connections=1)
    assert await run(runner, job_id) is Outcome.COMPLETED
    updates = changes.updates_of(job_id)
    progress_only = [u for u in updates if "status[job_status]:'processing'" in u][1:]
    assert len(updates) > 2, updates
    assert progress_only, updates
    assert "progress_message[text]:'step 1 of 5'" in progress_only[0]
