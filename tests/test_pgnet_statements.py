"""Migrations are cut into statements as the supabase CLI cuts them (pkg/parser, SplitAndTrim)."""

from __future__ import annotations

from jobhook.devstack.statements import split


def test_cuts_only_at_semicolons_outside_quoted_text() -> None:
    sql = """-- a comment; not a cut
create table t (a text default 'x;y', "b;c" int);
/* a block /* nested; */ still; */ select 1;
create function f() returns text language sql as $body$ select ';' $body$;
select $$;$$ ;;
create function g() returns int language sql begin atomic select 1; select 2; end;
select E'\\';'
"""
    assert split(sql) == [
        "-- a comment; not a cut\ncreate table t (a text default 'x;y', \"b;c\" int)",
        "/* a block /* nested; */ still; */ select 1",
        "create function f() returns text language sql as $body$ select ';' $body$",
        "select $$;$$",
        "create function g() returns int language sql begin atomic select 1; select 2; end",
        # The CLI knows no backslash escape inside quotes, so it cuts here too; so does this.
        "select E'\\'",
        "'",
    ]
