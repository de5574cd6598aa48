"""The code the docs show is code that runs: each Python and SQL block in README.md and docs/
carries a `<!-- doctest: ... -->` line, and this runs it.

- `handler {"params": ..., "result": ...}` (or `"error": "<part of the message>"`): the block is
  a handler module. It must pass ruff and mypy as the project's own code does, and then run as a
  job through the real app and delivery worker, ending with that result or error.
- `sql {"setup": "..."}`: the block runs against the test database, inside a transaction that
  is rolled back (after `setup`, when given).
"""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg
import pytest

from jobhook import vault
from jobhook.config import Settings
from jobhook.devstack.cluster import free_port
from jobhook.devstack.stack import serve
from jobhook.registry import Registry, registry
from tests.conftest import LOCAL_STACK, Stack, finished, insert_job, wait_for_job

PROJECT_DIR = Path(__file__).resolve().parent.parent
DOCS = [PROJECT_DIR / "README.md", *sorted((PROJECT_DIR / "docs").glob("*.md"))]
BLOCK = re.compile(
    r"(?:<!-- doctest: (?P<kind>\w+)(?: (?P<options>\{[^\n]*\}))? -->\n)?"
    r"```(?P<language>python|sql)\n(?P<code>.*?)```",
    re.DOTALL,
)


@dataclass(frozen=True)
class Example:
    where: str
    kind: str | None
    options: dict[str, Any]
    code: str

    def __str__(self) -> str:
        return self.where


def examples() -> list[Example]:
    found = []
    for doc in DOCS:
        text = doc.read_text()
        for match in BLOCK.finditer(text):
            line = text.count("\n", 0, match.start("code"))
            found.append(
                Example(
                    f"{doc.relative_to(PROJECT_DIR)}:{line}",
                    match["kind"],
                    json.loads(match["options"] or "{}"),
                    match["code"],
                )
            )
    return found


def of_kind(kind: str) -> list[Example]:
    return [example for example in examples() if example.kind == kind]


def test_every_python_and_sql_block_is_run() -> None:
    unmarked = [str(example) for example in examples() if example.kind not in ("handler", "sql")]
    assert unmarked == []
    assert of_kind("handler")
    assert of_kind("sql")


def handler_file(example: Example, folder: Path) -> Path:
    first = example.code.splitlines()[0]
    assert first.startswith("# handlers/"), f"{example}: a handler block names its file first"
    path = folder / Path(first.removeprefix("# ")).name
    path.write_text(example.code)
    return path


def test_the_handler_examples_are_lint_clean(tmp_path: Path) -> None:
    files = [str(handler_file(example, tmp_path)) for example in of_kind("handler")]
    config = str(PROJECT_DIR / "pyproject.toml")
    venv = Path(sys.executable).parent
    for command in (
        [str(venv / "ruff"), "check", "--config", config, *files],
        [str(venv / "ruff"), "format", "--check", "--config", config, *files],
        [str(venv / "mypy"), "--config-file", config, "--strict", *files],
    ):
        result = subprocess.run(  # noqa: S603
            command, capture_output=True, text=True, cwd=PROJECT_DIR, check=False
        )
        assert result.returncode == 0, result.stdout + result.stderr


def load_handler(example: Example, folder: Path) -> Registry:
    """Import the example as a module, and move what it registered into a registry of its own."""
    path = handler_file(example, folder)
    before = {job_type.name for job_type in registry}
    spec = importlib.util.spec_from_file_location(f"doc_example_{path.stem}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    own = Registry()
    for job_type in list(registry):
        if job_type.name not in before:
            own.add(job_type)
            del registry._types[job_type.name]
    assert list(own), f"{example}: the block registers no job type"
    return own


@pytest.mark.commits
@pytest.mark.parametrize("example", of_kind("handler"), ids=str)
async def test_the_handler_examples_run_as_jobs(
    example: Example, committed: Stack, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from functions.app import create_app

    # As on the dev stack: no Storage project, whatever this shell exports.
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    monkeypatch.delenv("SUPABASE_SERVICE_ROLE_KEY", raising=False)
    own = load_handler(example, tmp_path)
    [job_type] = list(own)
    port = free_port()
    with psycopg.connect(committed.url, autocommit=True) as conn:
        vault.write(conn, vault.WEBHOOK_URL, f"http://127.0.0.1:{port}/webhooks/jobs")
    settings = Settings(DATABASE_URL=committed.url, **LOCAL_STACK)  # type: ignore[arg-type]
    app = create_app(settings, job_registry=own, configure_logging=False)
    async with serve(settings, delivery_url=committed.admin_url, port=port, app=app):
        job_id = insert_job(committed.url, job_type.name, example.options["params"])
        row = await wait_for_job(committed.url, job_id, finished)
    if "result" in example.options:
        assert (row["status"], row["result"]) == ("completed", example.options["result"]), row
    else:
        assert row["status"] == "failed", row
        assert example.options["error"] in row["error"], row
        assert row["attempt"] == 1  # refused for good, not retried


@pytest.mark.parametrize("example", of_kind("sql"), ids=str)
def test_the_sql_examples_run(example: Example, test_db: Stack) -> None:
    with psycopg.connect(test_db.url) as conn:
        try:
            if "setup" in example.options:
                conn.execute(example.options["setup"])
            conn.execute(example.code)
        finally:
            conn.rollback()
