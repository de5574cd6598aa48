"""`jobhook types ts` and the supabase-js helper, compiled by `tsc --strict` against the real
@supabase/supabase-js that scripts/bootstrap installs (clients/typescript/package-lock.json)."""

from __future__ import annotations

import enum
import json
import subprocess
from pathlib import Path
from typing import Any, Literal

import psycopg
import pytest
from pydantic import BaseModel, ConfigDict, Field
from typer.testing import CliRunner

import handlers
from jobhook.cli import typescript
from jobhook.cli.main import app
from jobhook.context import JobContext
from jobhook.registry import Registry, registry

ROOT = Path(__file__).resolve().parent.parent
CLIENT = ROOT / "clients" / "typescript"
TSC = CLIENT / "node_modules" / ".bin" / "tsc"
USAGE = Path(__file__).resolve().parent / "typescript" / "usage.ts"


@pytest.fixture(scope="module")
def tsc() -> Path:
    if not TSC.exists():
        pytest.fail("the TypeScript toolchain is missing: run ./scripts/bootstrap (npm ci)")
    return TSC


def compile_strict(tsc: Path, folder: Path, files: list[str]) -> subprocess.CompletedProcess[str]:
    """`tsc --strict --noEmit` over files in `folder`, which import `@supabase/supabase-js` and
    the helper (`jobhook-client`) as an application would."""
    config = {
        "compilerOptions": {
            "strict": True,
            "noEmit": True,
            "noUncheckedIndexedAccess": True,
            "target": "ES2022",
            "module": "ES2022",
            "moduleResolution": "Bundler",
            "lib": ["ES2022", "DOM"],
            "types": ["node"],
            # supabase-js's own declarations are checked once, with the helper's build
            # (test_the_helper_compiles_in_strict_mode); here only what uses them.
            "skipLibCheck": True,
            "typeRoots": [str(CLIENT / "node_modules" / "@types")],
            "baseUrl": ".",
            "paths": {
                "@supabase/supabase-js": [
                    str(CLIENT / "node_modules" / "@supabase" / "supabase-js")
                ],
                "jobhook-client": [str(CLIENT / "src" / "jobs.ts")],
            },
        },
        "files": files,
    }
    (folder / "tsconfig.json").write_text(json.dumps(config))
    return subprocess.run(  # noqa: S603 - the toolchain bootstrap installed
        [str(tsc), "-p", str(folder)], capture_output=True, text=True, timeout=120, check=False
    )


def test_the_helper_compiles_in_strict_mode(tsc: Path) -> None:
    checked = subprocess.run(  # noqa: S603
        [str(tsc), "-p", str(CLIENT), "--noEmit"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_the_repos_types_and_the_helper_type_a_supabase_js_app(tsc: Path, tmp_path: Path) -> None:
    """usage.ts inserts, reads, watches and cancels through a `createClient<Database>`; each of
    its @ts-expect-error lines (user_id in an insert, a string for `steps`, an unknown type,
    an update of `status`) must be a compile error, and the generated row and the helper's
    must be one type."""
    handlers.load_all()
    (tmp_path / "jobhook-types.ts").write_text(typescript.render(registry))
    (tmp_path / "usage.ts").write_text(USAGE.read_text())
    (tmp_path / "readme.ts").write_text(readme_typescript())
    checked = compile_strict(tsc, tmp_path, ["usage.ts", "readme.ts"])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def readme_typescript() -> str:
    """The README's TypeScript example, with the client it assumes and its imports pointed at
    the helper and the generated types."""
    readme = (ROOT / "README.md").read_text()
    section = readme[readme.index("## From the browser (supabase-js)") :]
    snippet = section.split("```ts\n", 1)[1].split("```", 1)[0]
    snippet = snippet.replace("from './jobs'", "from 'jobhook-client'").replace(
        "from './jobhook'", "from './jobhook-types'"
    )
    client = (
        "import { createClient } from '@supabase/supabase-js'\n"
        "import type { Database } from './jobhook-types'\n"
        "const supabase = createClient<Database>('http://127.0.0.1:54321', 'anon-key')\n"
    )
    return client + snippet + "export {}\n"


def test_without_the_column_grants_in_the_types_tsc_lets_user_id_through(
    tsc: Path, tmp_path: Path
) -> None:
    """The check above is not vacuous: with user_id in the insert type, usage.ts fails on the
    very line that expects the error."""
    handlers.load_all()
    loose = typescript.render(registry).replace(
        "    job_type: K\n    payload?:", "    job_type: K\n    user_id?: string\n    payload?:"
    )
    (tmp_path / "jobhook-types.ts").write_text(loose)
    (tmp_path / "usage.ts").write_text(USAGE.read_text())
    checked = compile_strict(tsc, tmp_path, ["usage.ts"])
    assert checked.returncode != 0
    assert "Unused '@ts-expect-error' directive" in checked.stdout


class Colour(enum.Enum):
    RED = "red"
    BLUE = "blue"


class Size(BaseModel):
    width: int = Field(ge=1)
    height: int = Field(ge=1)


class Node(BaseModel):
    name: str
    children: list[Node] = []


class Rich(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: Size
    mode: Literal["fit", "fill"] = "fit"
    colour: Colour | None = None
    tags: list[str] = []
    weights: dict[str, float] = {}
    tree: Node | None = None
    quoted_key: int = Field(0, alias="quoted-key")


class Made(BaseModel):
    url: str
    bytes: int


def test_what_pydantic_emits_becomes_the_typescript_type_it_means(
    tsc: Path, tmp_path: Path
) -> None:
    types = Registry()

    @types.job("rich_task")
    async def rich_task(params: Rich, ctx: JobContext) -> Made:
        return Made(url="", bytes=0)

    @types.job("plain_task")
    async def plain_task(params: Size, ctx: JobContext) -> tuple[int, str]:
        return (1, "")

    generated = typescript.render(types)
    assert "export type RichTaskParams = {" in generated
    assert "  /** an integer; at least 1 */\n  width: number" in generated
    (tmp_path / "jobhook-types.ts").write_text(generated)
    (tmp_path / "check.ts").write_text(
        """
import type { JobRow, JobTypes, RichTaskParams } from './jobhook-types'

export const full: RichTaskParams = {
  size: { width: 2, height: 3 },
  mode: 'fill',
  colour: 'blue',
  tags: ['a'],
  weights: { a: 0.5 },
  tree: { name: 'root', children: [{ name: 'leaf' }] },
  'quoted-key': 4,
}
export const least: RichTaskParams = { size: { width: 1, height: 1 } }
// @ts-expect-error size is required
export const noSize: RichTaskParams = {}
// @ts-expect-error mode is one of two words
export const badMode: RichTaskParams = { size: { width: 1, height: 1 }, mode: 'stretch' }
// @ts-expect-error colour is an enum
export const badColour: RichTaskParams = { size: { width: 1, height: 1 }, colour: 'green' }
// @ts-expect-error extra="forbid": no other keys
export const extra: RichTaskParams = { size: { width: 1, height: 1 }, typo: 1 }

export function results(row: JobRow): number {
  if (row.job_type === 'rich_task' && row.result !== null) return row.result.bytes
  if (row.job_type === 'plain_task' && row.result !== null) return row.result[1].length
  // @ts-expect-error a plain_task result is a pair
  if (row.job_type === 'plain_task' && row.result !== null) return row.result[2]
  return 0
}
export const names: (keyof JobTypes)[] = ['rich_task', 'plain_task']
"""
    )
    checked = compile_strict(tsc, tmp_path, ["check.ts"])
    assert checked.returncode == 0, checked.stdout + checked.stderr + generated


def test_the_row_type_has_every_column_of_public_jobs_with_its_nullability(
    db: psycopg.Connection[Any],
) -> None:
    columns = dict(
        db.execute(
            "select column_name, is_nullable = 'YES' from information_schema.columns"
            " where table_schema = 'public' and table_name = 'jobs'"
        ).fetchall()
    )
    typed = dict(typescript.ROW_COLUMNS)
    assert set(typed) | {"job_type", "payload", "result"} == set(columns)
    for column, ts in typed.items():
        assert ("| null" in ts) == columns[column], column


def test_types_ts_prints_the_types_or_writes_them_to_a_file(tmp_path: Path) -> None:
    printed = CliRunner().invoke(app, ["types", "ts"])
    assert printed.exit_code == 0, printed.output
    assert (
        "  sample_task: { params: SampleTaskParams; result: SampleTaskResult }\n" in printed.stdout
    )
    assert "  steps?: number\n" in printed.stdout
    out = tmp_path / "jobhook.ts"
    written = CliRunner().invoke(app, ["types", "ts", "--out", str(out)])
    assert written.exit_code == 0, written.output
    assert out.read_text() == printed.stdout
