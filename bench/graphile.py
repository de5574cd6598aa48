"""graphile-worker as a second peer of `jobhook bench`: the fastest Postgres queue measured in
the same run, not remembered from another day.

Its worker is Node (bench/graphile/consumer.mjs, the release pinned in package.json, installed by
scripts/bootstrap when node is on the PATH); the producer is this process, calling
graphile_worker.add_job / add_jobs over psycopg as an application would. graphile-worker deletes
a job when it completes, so a run ends when its table is empty.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from queue import Queue
from typing import Any

import psycopg

HERE = Path(__file__).parent / "graphile"
DATABASE = "graphile_bench"
TASK = "bench_noop"


def available() -> bool:
    return shutil.which("node") is not None and (HERE / "node_modules" / "graphile-worker").is_dir()


def version() -> str:
    package = HERE / "node_modules" / "graphile-worker" / "package.json"
    return str(json.loads(package.read_text())["version"])


@dataclass(frozen=True)
class Worker:
    # (job id, when its task started in time.monotonic() seconds)
    started: Queue[tuple[str, float]]
    pid: int


@contextlib.contextmanager
def worker(url: str, report_starts: bool) -> Iterator[Worker]:
    """Start graphile-worker on `url`; stop it after. Its schema is installed on first start."""
    environment = os.environ | {"DATABASE_URL": url, "REPORT_STARTS": "1" if report_starts else "0"}
    process = subprocess.Popen(  # noqa: S603
        ["node", str(HERE / "consumer.mjs")],  # noqa: S607
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=environment,
    )
    assert process.stdout is not None
    started: Queue[tuple[str, float]] = Queue()
    ready = threading.Event()

    def read(stream: Any) -> None:
        for line in stream:
            if line.strip() == "ready":
                ready.set()
                continue
            job_id, at = line.split()
            started.put((job_id, int(at) / 1e9))

    reader = threading.Thread(target=read, args=(process.stdout,), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + 120
        # Its schema's install fails at once when the role may not create one: say so then.
        while not ready.wait(0.2):
            if process.poll() is not None or time.monotonic() > deadline:
                process.kill()
                _, errors = process.communicate(timeout=10)
                raise RuntimeError(f"graphile-worker did not start: {errors[-2000:]}")
        yield Worker(started, process.pid)
    finally:
        process.terminate()
        try:
            process.wait(30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(10)
        reader.join(10)
        process.stdout.close()
        if process.stderr is not None:
            process.stderr.close()


def add_one(conn: psycopg.Connection[Any]) -> tuple[str, float]:
    """Add a job; its id and when the commit returned, in time.monotonic() seconds (the clock
    the worker reports starts in)."""
    row = conn.execute("select (graphile_worker.add_job(%s, '{}'::json)).id", (TASK,)).fetchone()
    at = time.monotonic_ns() / 1e9
    assert row is not None
    return str(row[0]), at


def add_bulk(conn: psycopg.Connection[Any], jobs: int) -> None:
    conn.execute(
        "select count(*) from graphile_worker.add_jobs(array(select row(%s, '{}'::json, null,"
        " null, null, null, null, null)::graphile_worker.job_spec from generate_series(1, %s)))",
        (TASK, jobs),
    )


def wait_drained(conn: psycopg.Connection[Any], within: float = 600) -> None:
    deadline = time.monotonic() + within
    while conn.execute("select count(*) from graphile_worker._private_jobs").fetchone() != (0,):
        if time.monotonic() > deadline:
            raise RuntimeError(f"graphile-worker did not drain its jobs in {within} s")
        time.sleep(0.05)


def figures(url: str, jobs: int, latency_jobs: int, rate: float) -> dict[str, Any]:
    """Latency at `rate` single jobs a second, and throughput for `jobs` added in one call and
    one per transaction, each from the first add to the empty table."""
    from bench.run import collect_starts, percentiles

    with psycopg.connect(url, autocommit=True) as conn:
        with worker(url, report_starts=True) as running:
            for _ in range(20):  # unmeasured: connections open, code paths warm
                add_one(conn)
            time.sleep(1)
            commits: dict[str, float] = {}
            begin = time.monotonic()
            for n in range(latency_jobs):
                time.sleep(max(0.0, begin + n / rate - time.monotonic()))
                job_id, at = add_one(conn)
                commits[job_id] = at
            starts = collect_starts(running.started, set(commits), 60)
        latencies = [(starts[job] - at) * 1000 for job, at in commits.items()]
        wait_drained(conn)
        with worker(url, report_starts=False):
            began = time.perf_counter()
            add_bulk(conn, jobs)
            wait_drained(conn)
            bulk = jobs / (time.perf_counter() - began)
            began = time.perf_counter()
            for _ in range(jobs):
                add_one(conn)
            wait_drained(conn)
            row_by_row = jobs / (time.perf_counter() - began)
    return {
        "name": "graphile-worker",
        "version": version(),
        "latency_ms": percentiles(latencies),
        "throughput_jobs_per_s": round(bulk, 1),
        "throughput_row_by_row_jobs_per_s": round(row_by_row, 1),
    }
