"""Split a migration into the statements the supabase CLI records for it.

`supabase db push` stores each migration in `supabase_migrations.schema_migrations.statements` as
its statements, cut at every `;` that stands outside a string, quoted name, comment, dollar
quote, parenthesis or BEGIN ATOMIC body, each trimmed of its `;` and surrounding white space,
empty ones left out (supabase/cli pkg/parser/state.go and token.go, SplitAndTrim). Recording the
same lets the history the dev stack writes read, row for row, as one the CLI wrote.
"""

from __future__ import annotations

import re

_TAG_CHAR = re.compile(r"[^\W]", re.UNICODE)  # a letter, a digit or _, as in $tag$


def split(sql: str) -> list[str]:
    """The statements of `sql`, each as the CLI records it."""
    statements: list[str] = []
    start = 0
    for end in _cuts(sql):
        _keep(statements, sql[start:end])
        start = end
    _keep(statements, sql[start:])
    return statements


def _keep(statements: list[str], token: str) -> None:
    text = token.rstrip(";").strip()
    if text:
        statements.append(text)


def _cuts(sql: str) -> list[int]:
    """Where each statement ends (just past its `;`)."""
    cuts: list[int] = []
    i, n = 0, len(sql)
    while i < n:
        j = _skip_quoted(sql, i)
        if j != i:
            i = j
            continue
        ch = sql[i]
        if ch == ";":
            cuts.append(i + 1)
            i += 1
        elif ch == "(":
            i = _past_closing(sql, i + 1, ")")
        elif ch in "cC" and _ends_begin_atomic(sql, i + 1):
            i = _past_closing(sql, i + 1, "end")
        else:
            i += 1
    return cuts


def _skip_quoted(sql: str, i: int) -> int:
    """From `i`, past whatever quoted or commented text starts there (or `i` itself)."""
    n = len(sql)
    ch = sql[i]
    if ch in "'\"":
        # A doubled delimiter stays inside; anything else after a closing one is outside.
        j = i + 1
        while j < n:
            if sql[j] == ch:
                if j + 1 < n and sql[j + 1] == ch:
                    j += 2
                    continue
                return j + 1
            j += 1
        return n
    if sql.startswith("--", i):
        j = sql.find("\n", i + 2)
        return n if j < 0 else j + 1
    if sql.startswith("/*", i):
        depth, j = 1, i + 2
        while j < n and depth:
            if sql.startswith("/*", j):
                depth, j = depth + 1, j + 2
            elif sql.startswith("*/", j):
                depth, j = depth - 1, j + 2
            else:
                j += 1
        return j
    if ch == "\\":
        return min(i + 2, n)
    if ch == "$":
        j = i + 1
        while j < n and _TAG_CHAR.match(sql[j]):
            j += 1
        if j < n and sql[j] == "$":
            tag = sql[i : j + 1]
            k = sql.find(tag, j + 1)
            return n if k < 0 else k + len(tag)
    return i


def _ends_begin_atomic(sql: str, end: int) -> bool:
    start = end - len("atomic")
    return start > 0 and sql[start:end].lower() == "atomic" and sql[start - 1].isspace()


def _past_closing(sql: str, i: int, closing: str) -> int:
    """Past the first `closing` (case-insensitive) from `i` outside quoted text."""
    n = len(sql)
    while i < n:
        j = _skip_quoted(sql, i)
        if j != i:
            i = j
            continue
        if sql[i : i + len(closing)].lower() == closing:
            return i + len(closing)
        i += 1
    return n
