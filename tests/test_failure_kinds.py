"""Failure kinds are one vocabulary: jobhook.failure_kind in SQL, jobhook.jobs.FailureKind in
Python, equal value for value, and nothing else reaches `errors`."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest

from jobhook.jobs import FailureKind, JobError
from jobhook.runner import failure_kind

Conn = psycopg.Connection[tuple[Any, ...]]


def test_python_mirrors_the_sql_enum_in_order(db: Conn) -> None:
    [(values,)] = db.execute("select enum_range(null::jobhook.failure_kind)::text[]").fetchall()
    assert values == [kind.value for kind in FailureKind]


def test_an_unknown_kind_is_refused_by_the_database(db: Conn) -> None:
    with pytest.raises(psycopg.errors.InvalidTextRepresentation):
        db.execute("select jobhook.error_entry(1, 'boom', 'made_up')")


def test_a_handlers_own_unknown_kind_is_recorded_as_an_error() -> None:
    class QuotaError(JobError):
        kind = "quota"  # type: ignore[assignment]

    assert failure_kind(QuotaError("over quota")) is FailureKind.ERROR
    assert failure_kind(JobError("boom")) is FailureKind.ERROR
