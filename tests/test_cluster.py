"""The private cluster: reused across runs, recovered after a crash, settings the platform needs."""

from __future__ import annotations

import os
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from jobhook.devstack.cluster import Cluster, ClusterError, free_port, port_is_listening

pytestmark = pytest.mark.integration


@pytest.fixture
def own_cluster() -> Iterator[Cluster]:
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="jobhook-crash-")), port=free_port())
    try:
        yield cluster
    finally:
        cluster.destroy()


def postmaster_pid(cluster: Cluster) -> int:
    return int((cluster.data_dir / "postmaster.pid").read_text().splitlines()[0])


def wait_until_gone(pid: int, within: float = 10) -> None:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.02)
    raise AssertionError(f"process {pid} still alive")


def test_restart_after_kill_9_recovers_committed_data(own_cluster: Cluster) -> None:
    own_cluster.start()
    with psycopg.connect(own_cluster.url, autocommit=True) as conn:
        conn.execute("create table kept (v text); insert into kept values ('before the crash')")
    pid = postmaster_pid(own_cluster)
    os.kill(pid, signal.SIGKILL)
    wait_until_gone(pid)
    # Children of the killed postmaster notice and exit; the pid file is left behind.
    assert (own_cluster.data_dir / "postmaster.pid").exists()

    own_cluster.start()
    with psycopg.connect(own_cluster.url) as conn:
        assert conn.execute("select v from kept").fetchall() == [("before the crash",)]
    own_cluster.stop()
    assert not port_is_listening(own_cluster.port)


def test_start_adopts_a_running_cluster_and_keeps_its_data(own_cluster: Cluster) -> None:
    own_cluster.start()
    pid = postmaster_pid(own_cluster)
    own_cluster.start()
    assert postmaster_pid(own_cluster) == pid


def test_platform_settings_are_in_force(own_cluster: Cluster) -> None:
    own_cluster.start()
    with psycopg.connect(own_cluster.url) as conn:
        rows = conn.execute(
            "select name, setting from pg_settings where name in ('wal_level',"
            " 'shared_preload_libraries', 'cron.database_name', 'listen_addresses')"
        ).fetchall()
    settings: dict[str, str] = dict(rows)
    assert settings == {
        "wal_level": "logical",
        "shared_preload_libraries": "pg_cron",
        "cron.database_name": "postgres",
        "listen_addresses": "127.0.0.1",
    }


def test_a_taken_port_is_reported_with_what_to_do(own_cluster: Cluster, cluster: Cluster) -> None:
    own_cluster.port = cluster.port
    with pytest.raises(ClusterError, match=f"port {cluster.port} is taken"):
        own_cluster.start()


def test_the_password_is_required(cluster: Cluster) -> None:
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(cluster.url.replace("postgres:postgres@", "postgres:wrong@")).close()
