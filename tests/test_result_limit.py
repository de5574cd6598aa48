"""A result too big to store or to stream fails its job at once, saying its size and the cap."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import psycopg
import pytest
from psycopg.rows import dict_row
from pydantic import BaseModel

from jobhook.config import Settings
from jobhook.context import JobContext
from jobhook.registry import Registry
from jobhook.runner import Outcome
from jobhook.runtime import new_runner
from tests.conftest import Stack, insert_job

pytestmark = pytest.mark.commits

CAP = 4096
# {"text": "..."}: the bytes of the result's JSON text around the string.
WRAPPING = len('{"text": ""}')


class Nothing(BaseModel):
    pass


async def run_returning(url: str, result: Any, **environment: str) -> tuple[Outcome, Any]:
    """One sample_task job (3 attempts allowed) whose handler returns `result`, run by a runner
    wired from the settings as the app and Modal wire theirs."""
    registry = Registry()

    @registry.job("sample_task")
    async def returns(params: Nothing, ctx: JobContext) -> Any:
        return result

    job_id = insert_job(url, "sample_task")
    settings = Settings(DATABASE_URL=url, **environment)  # type: ignore[arg-type]
    runner = new_runner(settings, registry, min_connections=1)
    async with runner.store:
        [outcome] = await runner.run_many([job_id])
        await runner.completions.aclose()
    return outcome, read(url, job_id)


def read(url: str, job_id: UUID) -> dict[str, Any]:
    with psycopg.connect(url, row_factory=dict_row) as conn:
        row = conn.execute(
            "select status::text, attempt, error, errors, result,"
            " octet_length(result::text) as result_bytes from public.jobs where id = %s",
            (job_id,),
        ).fetchone()
    assert row is not None
    return row


async def test_a_result_over_the_cap_fails_the_job_for_good_naming_size_and_cap(
    committed: Stack,
) -> None:
    text = "é" * 3000  # 2 bytes each in UTF-8: measured in bytes, not characters
    outcome, row = await run_returning(
        committed.url, {"text": text}, JOBHOOK_MAX_RESULT_BYTES=str(CAP)
    )
    size = WRAPPING + 6000
    message = (
        f"the handler's result is {size} bytes, over the limit of {CAP} bytes"
        " (JOBHOOK_MAX_RESULT_BYTES); store large output in Storage and return its path"
    )
    assert outcome is Outcome.FAILED
    assert (row["status"], row["attempt"], row["error"], row["result"]) == (
        "failed",
        1,
        message,
        None,
    )
    assert [(e["kind"], e["message"]) for e in row["errors"]] == [("bad_result", message)]


async def test_a_result_of_exactly_the_cap_is_stored_and_measured_as_postgresql_does(
    committed: Stack,
) -> None:
    result = {"text": "é" * ((CAP - WRAPPING) // 2)}
    outcome, row = await run_returning(committed.url, result, JOBHOOK_MAX_RESULT_BYTES=str(CAP))
    assert outcome is Outcome.COMPLETED
    assert (row["status"], row["result"]) == ("completed", result)
    assert row["result_bytes"] == CAP


async def test_the_default_cap_keeps_a_row_under_realtimes_record_limit(
    committed: Stack,
) -> None:
    """Realtime replaces a record over 1 MiB (realtime.apply_rls's max_record_bytes) by an
    error; the default caps of result and payload together stay well under it."""
    settings = Settings(DATABASE_URL=committed.url)
    with psycopg.connect(committed.url) as conn:
        row = conn.execute("select max_payload_bytes from jobhook.settings").fetchone()
    assert row is not None
    assert settings.max_result_bytes + row[0] < 1024 * 1024 // 2
    outcome, job = await run_returning(
        committed.url, {"text": "x" * (settings.max_result_bytes - WRAPPING + 1)}
    )
    assert (outcome, job["status"]) == (Outcome.FAILED, "failed")
    assert f"over the limit of {settings.max_result_bytes} bytes" in job["error"]
