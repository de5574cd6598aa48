"""The benchmark harness runs end to end and prints the promised JSON (small numbers: this is
a test of the harness, not a measurement; speed is judged by `make bench`)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import pytest

from bench import graphile
from jobhook.devstack.cluster import Cluster

pytestmark = [pytest.mark.commits, pytest.mark.e2e]


def test_bench_json_has_every_promised_figure() -> None:
    command = [sys.executable, "-m", "jobhook.cli", "bench", "--json", "--jobs", "200"]
    command += ["--latency-jobs", "20", "--rate", "100", "--sweep-rows", "2000"]
    command += ["--producers", "4", "--offered-rate", "100", "--offered-seconds", "2"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["jobs"] == 200
    assert set(figures["latency_ms"]) >= {"p50", "p95", "p99"}
    stages = figures["latency_breakdown_ms"]
    # Every latency job came either by its own doorbell or by its count to a watching runner.
    assert stages["rung_jobs"] + stages["counted_jobs"] == 20
    assert stages["claim_to_start"] >= 0
    assert figures["throughput_jobs_per_s"] > 0
    assert figures["webhook_requests"] == 1  # 200 jobs in one insert: one doorbell
    # One doorbell per insert at most; fewer once inserts outpace max_doorbells_per_second.
    assert 1 <= figures["webhook_requests_row_by_row"] <= 200
    assert figures["wal_bytes_per_job"] > 0
    assert figures["sweep"]["finished_rows"] == 2000
    concurrent = figures["concurrent"]
    assert concurrent["producers"] == 4
    assert concurrent["offered_jobs_per_s"] == 100
    assert concurrent["jobs_per_s"] > 0
    assert concurrent["doorbell_requests_per_s"] > 0
    assert set(concurrent["latency_ms"]) == {"p50", "p99", "max"}
    assert concurrent["waited_for_sweep"] == 0
    assert concurrent["pg_net_timeouts"] == 0
    assert set(concurrent["peer"]) >= {"jobs_per_s", "latency_ms", "waited_for_sweep"}
    assert "concurrent_throughput" in figures["ratio"]
    names = [other["name"] for other in figures["peers"]]
    assert names == ["pgqueuer", "graphile-worker"]
    for other in figures["peers"]:
        assert set(other) == {
            "name", "version", "latency_ms", "throughput_jobs_per_s",
            "throughput_row_by_row_jobs_per_s",
        }  # fmt: skip
        assert other["throughput_jobs_per_s"] > 0
    assert figures["ratio"]["graphile_throughput"] > 0
    peer = figures["peer"]
    assert peer["name"] == "pgqueuer"
    assert set(peer) >= {"version", "latency_ms", "throughput_jobs_per_s", "wal_bytes_per_job"}
    assert set(figures["ratio"]) >= {"throughput", "latency_p50", "cpu_per_job_row_by_row"}
    for cpu in (figures["cpu_ms_per_job"], peer["cpu_ms_per_job"]):
        for sides in (cpu["bulk"], cpu["row_by_row"]):
            assert min(sides["producer"], sides["consumer"], sides["database"]) >= 0
            assert sides["consumer"] + sides["database"] > 0
            total = sides["producer"] + sides["consumer"] + sides["database"]
            assert sides["total"] == pytest.approx(total, abs=0.002)


def test_a_bench_stopped_with_sigterm_removes_its_cluster() -> None:
    before = set(Path(tempfile.gettempdir()).glob("jobhook-bench-*"))
    command = [sys.executable, "-m", "jobhook.cli", "bench", "--jobs", "200", "--no-peer"]
    command += ["--latency-jobs", "500", "--rate", "20", "--sweep-rows", "0"]
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE)  # noqa: S603
    try:
        deadline = time.monotonic() + 60
        made: set[Path] = set()
        # The latency run alone takes 25 s: stop it once its cluster is up.
        while not made and time.monotonic() < deadline:
            made = {
                path
                for path in set(Path(tempfile.gettempdir()).glob("jobhook-bench-*")) - before
                if (path / "pgdata" / "postmaster.pid").exists()
            }
            time.sleep(0.2)
        assert made, "the benchmark never started its cluster"
        time.sleep(3)  # well inside the run: consumer started, inserts going
        process.send_signal(signal.SIGTERM)
        _, stderr = process.communicate(timeout=60)
    finally:
        process.kill()
    assert process.returncode == 130, stderr.decode()[-2000:]
    assert "interrupted" in stderr.decode()
    assert not [path for path in made if path.exists()]


@pytest.mark.skipif(not graphile.available(), reason="node or graphile-worker is not installed")
def test_graphile_starts_are_read_on_the_producers_clock(cluster: Cluster) -> None:
    """Each reported start lies between the moment the producer began the add and the moment
    it read the report, on the clock the producer stamps its commits with: a start stamped on
    another clock, or floored to the millisecond as Date.now() is, lands outside for the
    sub-millisecond waits measured, and the peer's latency figures come out negative."""
    database = "graphile_clock_check"
    # Made by postgres, as the bench makes the peer's database.
    with psycopg.connect(cluster.url, autocommit=True) as conn:
        conn.execute(f"drop database if exists {database}")
        conn.execute(f"create database {database}")
    url = cluster.database_url(database)
    with psycopg.connect(url, autocommit=True) as conn, graphile.worker(url, True) as running:
        for _ in range(20):
            began_at = time.monotonic()
            job_id, committed_at = graphile.add_one(conn)
            started_id, started_at = running.started.get(timeout=30)
            read_at = time.monotonic()
            assert started_id == job_id
            assert began_at < committed_at < read_at
            assert began_at < started_at < read_at
