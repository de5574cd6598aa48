"""The package layout says what runs where, and the import rules keep it true.

The runtime (`jobhook`, less `jobhook.devstack` and `jobhook.cli`) is what Modal imports: it
never imports the dev stack, the CLI, the app (`functions`), the handlers or the benchmark, nor a
library only the dev group installs. `make lint` runs this file too.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

from modal_app import not_shipped

ROOT = Path(__file__).resolve().parent.parent
LOCAL_ONLY = ("jobhook/devstack", "jobhook/cli")
# Installed by the dev group only (pyproject.toml), so absent from the Modal image.
DEV_ONLY = {"uvicorn", "aiohttp", "typer", "rich", "pytest", "pgqueuer", "asyncpg", "schemathesis"}


def modules(folder: str) -> Iterator[Path]:
    for path in sorted((ROOT / folder).rglob("*.py")):
        relative = path.relative_to(ROOT).as_posix()
        if folder == "jobhook" and relative.startswith(LOCAL_ONLY):
            continue
        yield path


def imported(path: Path) -> set[str]:
    """Every module `path` imports, at the top or inside functions."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def breaks(names: set[str], forbidden: set[str]) -> list[str]:
    return sorted(n for n in names if any(n == f or n.startswith(f + ".") for f in forbidden))


RUNTIME = list(modules("jobhook"))


@pytest.mark.parametrize("path", RUNTIME, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_the_runtime_imports_nothing_that_stays_behind(path: Path) -> None:
    forbidden = {"jobhook.devstack", "jobhook.cli", "functions", "handlers", "bench", *DEV_ONLY}
    assert breaks(imported(path), forbidden) == []


@pytest.mark.parametrize(
    "path",
    [*modules("functions"), *modules("handlers"), ROOT / "modal_app.py"],
    ids=lambda p: p.relative_to(ROOT).as_posix(),
)
def test_the_app_and_the_handlers_ship_without_the_dev_stack(path: Path) -> None:
    forbidden = {"jobhook.devstack", "jobhook.cli", "bench", *DEV_ONLY}
    assert breaks(imported(path), forbidden) == []


def test_the_modal_image_leaves_the_dev_stack_and_the_cli_behind() -> None:
    assert not_shipped(Path("jobhook/devstack/cluster.py"))
    assert not_shipped(Path("jobhook/devstack/platform/platform.sql"))
    assert not_shipped(Path("jobhook/cli/main.py"))
    assert not_shipped(Path("jobhook/__pycache__/runner.cpython-311.pyc"))
    assert not not_shipped(Path("jobhook/runner.py"))
    assert not not_shipped(Path("jobhook/sql/queries.sql"))
    assert not not_shipped(Path("handlers/cli_tools.py"))


def test_the_layout_checks_reach_every_runtime_module() -> None:
    names = {p.relative_to(ROOT).as_posix() for p in RUNTIME}
    assert {"jobhook/runner.py", "jobhook/runtime.py", "jobhook/store.py"} <= names
    assert not any(name.startswith(LOCAL_ONLY) for name in names)
