"""Run the pgTAP suite in supabase/tests with pg_prove, as `supabase test db` does."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import Stack

TESTS_DIR = Path(__file__).resolve().parent.parent / "supabase" / "tests"


def test_pgtap_suite_passes(test_db: Stack) -> None:
    pg_prove = shutil.which("pg_prove")
    if pg_prove is None:
        pytest.fail(
            "pg_prove is missing: run `make bootstrap` (libtap-parser-sourcehandler-pgtap-perl)"
        )
    result = subprocess.run(  # noqa: S603
        [
            pg_prove,
            "--host",
            "127.0.0.1",
            "--port",
            str(test_db.cluster.port),
            "--username",
            "postgres",
            "--dbname",
            "postgres",
            "--ext",
            ".sql",
            "--recurse",
            "--failures",
            str(TESTS_DIR),
        ],
        env={**os.environ, "PGPASSWORD": "postgres"},
        capture_output=True,
        text=True,
        check=False,
        timeout=300,
    )
    assert result.returncode == 0, f"pg_prove failed:\n{result.stdout}\n{result.stderr}"
    assert "All tests successful" in result.stdout
