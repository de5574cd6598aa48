"""Every failure the `jobhook` command can meet, said in one or two lines: the problem, then the
option or command that fixes it. A traceback only with `--debug`."""

from __future__ import annotations

import psycopg
from psycopg import errors as pg_errors
from pydantic import ValidationError

from jobhook.devstack.cluster import ClusterError
from jobhook.devstack.stack import PortTaken
from jobhook.jobs import SetupError


class CliError(SetupError):
    """A failure the CLI explains itself: `problem`, then `fix` on a second line."""

    def __init__(self, problem: str, fix: str | None = None, *, code: int = 2) -> None:
        super().__init__(problem)
        self.problem = problem
        self.fix = fix
        self.code = code


def explain(exc: BaseException, database: str | None) -> CliError | None:
    """The lines that say what went wrong, or None for a failure the CLI does not know."""
    where = f" at {database}" if database else ""
    if isinstance(exc, CliError):
        return exc
    if isinstance(exc, PortTaken):
        problem, fix = str(exc).split("\n", 1)
        return CliError(problem, fix)
    if isinstance(exc, ClusterError):
        return CliError(str(exc).splitlines()[0], _rest(str(exc)))
    if isinstance(exc, pg_errors.InvalidSchemaName | pg_errors.UndefinedTable):
        return CliError(
            f"the database{where} has no jobhook schema: its migrations are not applied",
            "hosted: `supabase db push`; local: start the dev stack (`make dev`), which applies "
            "them, or point --database-url at the right database",
        )
    if isinstance(exc, pg_errors.UndefinedFunction) and "jobhook." in str(exc):
        return CliError(
            f"the database{where} lacks a jobhook function: its migrations are behind the code",
            "apply them: `supabase db push` (hosted) or restart the dev stack (`make dev`)",
        )
    if isinstance(exc, psycopg.OperationalError):
        text = str(exc)
        if "password authentication failed" in text:
            return CliError(
                f"the database{where} refused the password",
                "fix the password in --database-url or DATABASE_URL "
                "(the dev stack's is `postgres`)",
            )
        if 'database "' in text and "does not exist" in text:
            return CliError(f"no such database{where}", "fix the database name in --database-url")
        return CliError(
            f"cannot reach the database{where}",
            "start the dev stack with `make dev` (or `jobhook dev`), or point --database-url "
            "or DATABASE_URL at a running database",
        )
    if isinstance(exc, psycopg.ProgrammingError) and (
        "connection info string" in str(exc) or "invalid" in str(exc).lower()
    ):
        return CliError(
            f"the database URL is malformed: {str(exc).splitlines()[0]}",
            "write it as postgresql://USER:PASSWORD@HOST:PORT/DATABASE",
        )
    if isinstance(exc, ValidationError):
        first = exc.errors(include_url=False)[0]
        name = str(first["loc"][0]) if first["loc"] else exc.title
        return CliError(
            f"{name} is invalid: {first['msg']}",
            f"fix {name} in the environment (or in .env), or unset it",
        )
    return None


def _rest(text: str) -> str | None:
    lines = text.splitlines()[1:]
    return lines[-1].strip() if lines else None
