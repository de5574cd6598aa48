"""A payload the runtime cannot read fails its own job, never the batch it was claimed with; the
enqueue checks that refuse such payloads (supabase/tests/07_unreadable_input.sql) stay inside
the runtime's real limits."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID

import httpx
import psycopg
import pytest
from psycopg.types.json import Jsonb
from pydantic import BaseModel, JsonValue, ValidationError

from jobhook.devstack.stack import Served
from jobhook.runner import Outcome, Runner
from jobhook.store import Store
from tests import handlers_for_tests
from tests.conftest import (
    DEMO_USER,
    Stack,
    act_as_user,
    finished,
    insert_job,
    user_token,
    wait_for_job,
)

pytestmark = pytest.mark.commits

# The enqueue trigger's cap (supabase/migrations/20261203000100_harden_enqueue_and_doorbell.sql).
MAX_DEPTH = 200
UNREADABLE = {
    # PostgreSQL prints 1e5000 in full: 5,001 digits, over CPython's 4,300.
    "digits": ('{"x": 1e5000}', "the payload holds an integer of more than 4300 digits"),
    "depth": (
        '{"x": ' + "[" * 3000 + "]" * 3000 + "}",
        "the payload is nested too deeply to read",
    ),
}


def nested(levels: int) -> dict[str, Any]:
    """A payload `levels` containers deep, the top object included."""
    value: Any = 1
    for _ in range(levels - 1):
        value = [value]
    return {"x": value}


def insert_batch(database_url: str, count: int) -> list[UUID]:
    with psycopg.connect(database_url) as conn:
        act_as_user(conn, DEMO_USER)
        rows = conn.execute(
            "insert into public.jobs (job_type, payload)"
            " select 'sample_task', jsonb_build_object('steps', 1, 'step_seconds', 0, 'result', n)"
            " from generate_series(1, %s) n returning id",
            (count,),
        ).fetchall()
    return [UUID(str(row[0])) for row in rows]


def corrupt(database_url: str, job_id: UUID, payload_text: str) -> None:
    """What the enqueue checks now refuse, written as rows from before them were: an update by
    the owner of the table, which no insert trigger sees."""
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute(
            "update public.jobs set payload = %s::jsonb where id = %s", (payload_text, job_id)
        )


@pytest.mark.parametrize("problem", sorted(UNREADABLE))
async def test_an_unreadable_payload_fails_alone_and_the_rest_of_its_batch_runs(
    committed: Stack, problem: str
) -> None:
    payload_text, message = UNREADABLE[problem]
    ids = insert_batch(committed.url, 5)
    bad = ids[2]
    corrupt(committed.url, bad, payload_text)
    async with Store.open(committed.url, min_size=1, max_size=4) as store:
        runner = Runner(store, handlers_for_tests.registry, "test-runner")
        outcomes = await runner.run_many(ids)
        await runner.completions.aclose()
    assert sorted(outcomes) == sorted([Outcome.FAILED] + [Outcome.COMPLETED] * 4)
    with psycopg.connect(committed.url) as conn:
        rows = {
            row[0]: row[1:]
            for row in conn.execute(
                "select id, status::text, attempt, error, errors from public.jobs"
            ).fetchall()
        }
    status, attempt, error, errors = rows[bad]
    assert (status, attempt, error) == ("failed", 1, message)
    assert [(e["kind"], e["message"]) for e in errors] == [("invalid_payload", message)]
    assert {rows[i][0] for i in ids if i != bad} == {"completed"}


def test_the_runtime_reads_what_the_enqueue_checks_let_through() -> None:
    """The cap lies inside the runtime's limits: the deepest accepted payload survives the
    driver's decoder, a parameter model and the result's serialisation, and the real limit is
    not far above it, so the cap is no guess."""

    class Params(BaseModel):
        x: JsonValue

    deepest = nested(MAX_DEPTH)
    loaded = json.loads(json.dumps(deepest))
    Params.model_validate(loaded)
    json.dumps(Params.model_validate(loaded).model_dump(mode="json"))
    with pytest.raises(ValidationError):
        Params.model_validate(json.loads(json.dumps(nested(257))))
    with pytest.raises(ValueError, match="4300 digits"):
        json.loads('{"x": 1' + "0" * 4300 + "}")


async def test_the_deepest_accepted_payload_is_inserted_and_runs(
    committed: Stack, app_stack: Served
) -> None:
    payload = {"steps": 1, "step_seconds": 0, "result": nested(MAX_DEPTH - 1)}
    job_id = insert_job(committed.url, "sample_task", payload)
    row = await wait_for_job(committed.url, job_id, finished)
    assert row["status"] == "completed", row["errors"]


async def test_clients_read_and_cancel_a_job_whose_payload_cannot_be_read(
    committed: Stack, app_stack: Served
) -> None:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        # Not rung, so that nothing claims it while the test reads it.
        conn.execute("update jobhook.settings set max_dispatches = 1")
        job_id = UUID(
            str(
                conn.execute(
                    "insert into public.jobs (user_id, job_type, payload, run_at)"
                    " values (%s, 'sample_task', %s, now() + interval '1 hour') returning id",
                    (DEMO_USER, Jsonb({})),
                ).fetchone()[0]  # type: ignore[index]
            )
        )
    corrupt(committed.url, job_id, UNREADABLE["digits"][0])
    headers = {"Authorization": f"Bearer {user_token()}"}
    async with httpx.AsyncClient(base_url=app_stack.url, headers=headers) as http:
        listed = await http.get("/jobs")
        assert listed.status_code == 200, listed.text
        [job] = [j for j in listed.json()["jobs"] if j["id"] == str(job_id)]
        expected = {"unreadable": "this value holds an integer of more than 4300 digits"}
        assert job["payload"] == expected
        one = await http.get(f"/jobs/{job_id}")
        assert (one.status_code, one.json()["payload"]) == (200, expected)
        cancelled = await http.post(f"/jobs/{job_id}/cancel")
        assert (cancelled.status_code, cancelled.json()["status"]) == (200, "cancelled")
