"""Run the `jobhook` command as a user runs it: a separate process, its own environment."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from jobhook.devstack.database import PROJECT_DIR


def run(
    *args: str,
    data_dir: Path,
    env: dict[str, str] | None = None,
    timeout: float = 60,
    stdin: str | None = None,
) -> subprocess.CompletedProcess[str]:
    """`jobhook ARGS` with no DATABASE_URL and its own data dir, so neither the shell's settings
    nor a dev stack running from this checkout can answer in the test's place."""
    base = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "JOBHOOK_API_KEY")}
    base |= {"JOBHOOK_DATA_DIR": str(data_dir), "COLUMNS": "80", "NO_COLOR": "1"}
    return subprocess.run(  # noqa: S603
        [sys.executable, "-m", "jobhook.cli", *args],
        env=base | (env or {}),
        cwd=PROJECT_DIR,
        capture_output=True,
        text=True,
        timeout=timeout,
        input=stdin,
        check=False,
    )


def explained(result: subprocess.CompletedProcess[str]) -> str:
    """The failure's stderr, checked to be what every failure must be: one or two lines that
    start with `error:`, and no traceback."""
    lines = [line for line in result.stderr.splitlines() if not line.startswith("database: ")]
    assert result.returncode != 0, result
    assert "Traceback" not in result.stderr, result.stderr
    assert 1 <= len(lines) <= 2, result.stderr
    assert lines[0].startswith("error: "), result.stderr
    return "\n".join(lines)
