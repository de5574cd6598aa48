"""The job type catalogue while deploys overlap: a start never disables what a live deployment
still serves."""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
from pydantic import BaseModel

from jobhook.context import JobContext
from jobhook.registry import SERVE_SECONDS, Registry
from jobhook.store import Store
from tests.conftest import Stack

Conn = psycopg.Connection[tuple[Any, ...]]


class NoParams(BaseModel):
    pass


def deployment(*names: str) -> Registry:
    registry = Registry()
    for name in names:

        async def handler(params: NoParams, ctx: JobContext) -> None:
            return None

        registry.job(name, params=NoParams)(handler)
    return registry


def enabled(db: Conn) -> dict[str, bool]:
    return dict(db.execute("select name, enabled from jobhook.job_types").fetchall())


def test_a_new_deployment_leaves_the_types_the_old_one_still_serves(db: Conn) -> None:
    old, new = deployment("retiring", "shared"), deployment("shared", "fresh")
    assert old.sync(db) == []
    assert new.sync(db) == []  # the old version's containers still run "retiring"
    assert enabled(db).items() >= {"retiring": True, "shared": True, "fresh": True}.items()

    # The old deployment is gone: nobody renews "retiring", and once its renewal has run out
    # the next start (or renewal) disables it.
    db.execute(
        "update jobhook.job_types set served_until = now() - interval '1 s' where name = 'retiring'"
    )
    assert new.sync(db) == ["retiring"]
    assert enabled(db)["retiring"] is False
    assert enabled(db)["shared"] is True


def test_types_written_by_hand_are_left_alone(db: Conn) -> None:
    db.execute("insert into jobhook.job_types (name) values ('by_hand')")
    assert deployment("fresh").sync(db) == []
    assert enabled(db)["by_hand"] is True


@pytest.mark.commits
async def test_a_live_deployment_renews_its_types(committed: Stack) -> None:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        deployment("renewed", "lapsed").sync(conn)
        conn.execute(
            "update jobhook.job_types set served_until = now() - interval '1 s'"
            " where name in ('renewed', 'lapsed')"
        )
    async with Store.open(committed.url, min_size=1, max_size=1) as store:
        assert await store.renew_job_types(["renewed"], SERVE_SECONDS) == ["lapsed"]
    with psycopg.connect(committed.url) as conn:
        rows = {
            name: (is_enabled, renewed)
            for name, is_enabled, renewed in conn.execute(
                "select name, enabled, served_until > now() + interval '4 minutes'"
                " from jobhook.job_types where name in ('renewed', 'lapsed')"
            )
        }
    assert rows == {"renewed": (True, True), "lapsed": (False, False)}
