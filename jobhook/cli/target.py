"""Which database a client verb (`submit`, `jobs`, `types`, `sweep`) talks to, and why.

The precedence, first match wins:

1. `--database-url URL` on the command line;
2. `DATABASE_URL` in the environment (never read from a file: `.env` is the dev stack's, and a
   deployment's settings live in `deploy/<env>.env`, which only `deploy` and `secrets` read);
3. the dev stack `jobhook dev` is running from this checkout (it records its URLs in its data
   dir, `.jobhook/stack.json`, and removes the record when it stops);
4. the default, `postgresql://postgres:postgres@127.0.0.1:54322/postgres`.

Whenever the answer is not the default, the verb says which database it uses, on stderr.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from jobhook.config import LOCAL_DATABASE_URL
from jobhook.devstack import database
from jobhook.devstack.stack import recorded


def data_dir(given: Path | None = None) -> Path:
    """The dev stack's data dir: `--data-dir`, else JOBHOOK_DATA_DIR, else `.jobhook/`."""
    if given is not None:
        return given
    from_env = os.environ.get("JOBHOOK_DATA_DIR")
    return Path(from_env) if from_env else database.PROJECT_DIR / ".jobhook"


@dataclass(frozen=True)
class Target:
    url: str
    source: str

    @property
    def is_default(self) -> bool:
        return self.url == LOCAL_DATABASE_URL

    def describe(self) -> str:
        return f"{masked(self.url)} ({self.source})"


def resolve(flag: str | None) -> Target:
    if flag:
        return Target(flag, "--database-url")
    from_env = os.environ.get("DATABASE_URL")
    if from_env:
        return Target(from_env, "DATABASE_URL")
    root = data_dir()
    stack = recorded(root)
    if stack is not None:
        return Target(stack["database_url"], f"the dev stack recorded in {_shown(root)}")
    return Target(LOCAL_DATABASE_URL, "the default")


def masked(url: str) -> str:
    """The URL without its password, fit for a terminal or a log."""
    try:
        parts = conninfo_to_dict(url)
    except ProgrammingError:
        return "<a malformed database URL>"
    if "password" not in parts:
        return url
    parts["password"] = "***"  # noqa: S105 - what replaces the password on screen
    if url.startswith(("postgresql://", "postgres://")):
        user = parts.get("user", "")
        host = parts.get("host", "")
        port = f":{parts['port']}" if parts.get("port") else ""
        return f"postgresql://{user}:***@{host}{port}/{parts.get('dbname', '')}"
    return make_conninfo("", **{k: str(v) for k, v in parts.items() if v is not None})


def _shown(path: Path) -> str:
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)
