"""A client that names a column it may not write gets PostgreSQL's bare privilege error; the
column and the README explain it, in the words the client actually reads."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.conftest import DEMO_USER, act_as_user

README = Path(__file__).resolve().parent.parent / "README.md"


def test_an_insert_naming_user_id_fails_with_the_error_the_column_and_readme_explain(
    db: psycopg.Connection[Any],
) -> None:
    act_as_user(db, DEMO_USER)
    with pytest.raises(psycopg.errors.InsufficientPrivilege) as refused:
        db.execute(
            "insert into public.jobs (user_id, job_type) values (%s, 'sample_task')", (DEMO_USER,)
        )
    message = refused.value.diag.message_primary
    assert message == "permission denied for table jobs"
    assert refused.value.sqlstate == "42501"
    db.rollback()

    row = db.execute(
        "select col_description('public.jobs'::regclass, a.attnum)"
        "  from pg_attribute a where a.attrelid = 'public.jobs'::regclass and a.attname = 'user_id'"
    ).fetchone()
    assert row is not None
    assert f'"{message}" (42501)' in row[0]
    assert "Clients must not send it" in row[0]
    assert f"**`{message}`** (code `42501`" in README.read_text()


def test_the_same_insert_without_user_id_is_the_callers_job(db: psycopg.Connection[Any]) -> None:
    act_as_user(db, DEMO_USER)
    row = db.execute(
        "insert into public.jobs (job_type) values ('sample_task') returning user_id::text"
    ).fetchone()
    assert row == (DEMO_USER,)
