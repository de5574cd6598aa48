"""The benchmark harness runs end to end and prints the promised JSON (small numbers: this is
a test of the harness, not a measurement; speed is judged by `make bench`)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

pytestmark = pytest.mark.commits


def test_bench_json_has_every_promised_figure() -> None:
    command = [sys.executable, "-m", "jobhook.cli", "bench", "--json", "--jobs", "200"]
    command += ["--latency-jobs", "20", "--rate", "100", "--sweep-rows", "2000"]
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)  # noqa: S603
    assert result.returncode == 0, result.stderr[-3000:]
    figures = json.loads(result.stdout.strip().splitlines()[-1])
    assert figures["jobs"] == 200
    assert set(figures["latency_ms"]) >= {"p50", "p95", "p99"}
    assert figures["throughput_jobs_per_s"] > 0
    assert figures["webhook_requests"] == 1  # 200 jobs in one insert: one doorbell
    assert figures["webhook_requests_row_by_row"] == 200
    assert figures["wal_bytes_per_job"] > 0
    assert figures["sweep"]["finished_rows"] == 2000
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
