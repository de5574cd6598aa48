"""`jobhook bench`: jobhook and pgqueuer measured on one cluster, in one run, the same way.

A throwaway PostgreSQL 15 cluster is made for the run (the dev stack's own code builds it), with
jobhook migrated into `postgres` and pgqueuer installed in a database of its own. For each
system, in this order:

- latency: after 20 unmeasured jobs to warm both sides up, `latency_jobs` single-job inserts at
  `rate` per second; for each, the wall clock from the moment the producer's commit returns to
  the moment the handler starts, in another process. (jobhook's producer inserts as an
  authenticated user, as supabase-js does, in one round trip, as pgqueuer enqueues.)
- throughput: `jobs` no-op jobs inserted in one statement, then again one per transaction;
  jobs per second from the first insert to the last completion, both read from the database's
  own timestamps, and for jobhook the webhook requests they cost.
- WAL: bytes of WAL per job over the bulk run, from insert to completion, by pg_current_wal_lsn().
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import multiprocessing
import os
import queue
import statistics
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import asdict, dataclass, field
from importlib.metadata import version
from pathlib import Path
from typing import Any

import psycopg
from psycopg import sql

from bench import cpu, graphile, workers
from jobhook import vault
from jobhook.config import DEMO_USER_ID
from jobhook.devstack import database
from jobhook.devstack.cluster import Cluster, free_port

PGQUEUER_DB = "pgqueuer_bench"
CLAIMS = json.dumps({"sub": DEMO_USER_ID, "role": "authenticated"})


@dataclass
class Figures:
    name: str
    version: str
    latency_ms: dict[str, float]
    throughput_jobs_per_s: float
    throughput_row_by_row_jobs_per_s: float
    # How fast the producer alone got its row-by-row inserts in: the ceiling of the run above.
    row_by_row_insert_jobs_per_s: float
    wal_bytes_per_job: float
    # Milliseconds of CPU per job in each throughput run, by side (see bench/cpu.py).
    cpu_ms_per_job: dict[str, dict[str, float]] | None = None
    webhook_requests: int | None = None
    webhook_requests_row_by_row: int | None = None
    # jobhook's insert→start latency by stage (Stages.breakdown).
    latency_breakdown_ms: dict[str, float | int] | None = None


@dataclass
class Stages:
    """When jobhook's consumer had each latency job's doorbell request and its claim (reported
    by its app and its handler beside the start): where a job's wait went."""

    requested: dict[str, float] = field(default_factory=dict)
    claimed: dict[str, float] = field(default_factory=dict)

    def note(self, item: tuple[Any, ...]) -> None:
        kind, what, at = item
        if kind == "claimed":
            self.claimed[what] = at
        elif kind == "request":
            for job_id in what:
                self.requested.setdefault(job_id, at)

    def breakdown(self, commits: dict[str, float], starts: dict[str, float]) -> dict[str, Any]:
        """Medians in ms: for jobs a doorbell named, commit → the app has the request → claimed;
        for jobs a watching runner found by their count (jobhook.linger), commit → claimed; for
        all, claimed → handler start."""

        def median_ms(pairs: list[tuple[float, float]]) -> float | None:
            return round(statistics.median(b - a for a, b in pairs) * 1000, 2) if pairs else None

        done = [job for job in commits if job in starts and job in self.claimed]
        rung = [job for job in done if job in self.requested]
        counted = [job for job in done if job not in self.requested]
        return {
            "rung_jobs": len(rung),
            "commit_to_request": median_ms([(commits[j], self.requested[j]) for j in rung]),
            "request_to_claim": median_ms([(self.requested[j], self.claimed[j]) for j in rung]),
            "counted_jobs": len(counted),
            "commit_to_claim": median_ms([(commits[j], self.claimed[j]) for j in counted]),
            "claim_to_start": median_ms([(self.claimed[j], starts[j]) for j in done]),
        }


@dataclass(frozen=True)
class Run:
    """One throughput run, from the first insert to the last completion."""

    jobs_per_s: float
    inserted_per_s: float  # the producer alone
    wal_bytes: int
    cpu_ms_per_job: dict[str, float] | None
    webhook_requests: int | None = None


async def measure(
    url: str,
    jobs: int,
    insert: Callable[[], Awaitable[None]],
    finished: str,
    sides: cpu.Sides | None,
) -> tuple[float, int, dict[str, float] | None]:
    """Insert, wait until `finished` counts every job; the producer's rate, WAL and CPU."""
    lsn = await wal_lsn(url)
    before = sides.sample() if sides else None
    inserting = time.perf_counter()
    await insert()
    inserted_per_s = jobs / (time.perf_counter() - inserting)
    await wait_until(finished, url, jobs, within=600)
    spent = cpu.per_job(before, sides.sample(), jobs) if sides and before else None
    return inserted_per_s, await wal_bytes(url, lsn), spent


def sides_of(consumer: Consumer, postmaster: int | None) -> cpu.Sides | None:
    if postmaster is None or not cpu.available():
        return None
    return cpu.Sides(producer=os.getpid(), consumer=consumer.pid, postmaster=postmaster)


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    cuts = statistics.quantiles(ordered, n=100, method="inclusive")
    return {
        "p50": round(statistics.median(ordered), 2),
        "p95": round(cuts[94], 2),
        "p99": round(cuts[98], 2),
        "max": round(ordered[-1], 2),
    }


@dataclass(frozen=True)
class Consumer:
    started: Any  # a queue of (job id, start time)
    pid: int


@contextlib.contextmanager
def child(target: Callable[..., None], *args: Any) -> Iterator[Consumer]:
    """Start a consumer process; stop it after."""
    context = multiprocessing.get_context("spawn")
    started = context.Queue()
    stop = context.Event()
    process = context.Process(target=target, args=(started, stop, *args))
    process.start()
    try:
        kind, _ = started.get(timeout=120)
        assert kind == "ready", kind
        assert process.pid is not None
        yield Consumer(started, process.pid)
    finally:
        stop.set()
        process.join(30)
        if process.is_alive():
            process.kill()


def collect_starts(
    started: Any, expected: set[str], within: float, stages: Stages | None = None
) -> dict[str, float]:
    starts = collect_some(started, expected, within, stages)
    missing = expected - starts.keys()
    if missing:
        raise RuntimeError(f"{len(missing)} job(s) never started within {within} s")
    return starts


def collect_some(
    started: Any, expected: set[str], within: float, stages: Stages | None = None
) -> dict[str, float]:
    """(job id, start time) pairs from `started` until every expected job is in, or `within`
    seconds have passed; what never started is left out. jobhook's stage reports go to
    `stages`."""
    starts: dict[str, float] = {}
    # Counted down, not recomputed per report: the concurrent scenario reads a backlog of 20,000
    # reports at once, and a set difference per report made that quadratic, past the deadline.
    waiting = set(expected)
    deadline = time.monotonic() + within
    while waiting and time.monotonic() < deadline:
        try:
            item = started.get(timeout=0.5)
        except queue.Empty:
            continue
        if len(item) == 2:
            starts[item[0]] = item[1]
            waiting.discard(item[0])
        elif stages is not None:
            stages.note(item)
    return starts


def note_stages(started: Any, stages: Stages, within: float) -> None:
    """What stage reports come in `within` seconds."""
    deadline = time.monotonic() + within
    while (left := deadline - time.monotonic()) > 0:
        try:
            item = started.get(timeout=left)
        except queue.Empty:
            return
        if len(item) == 3:
            stages.note(item)


WARM_UP_JOBS = 20


async def warm_up(insert: Callable[[], Awaitable[tuple[str, float]]], started: Any) -> None:
    """Run a few jobs first, unmeasured: connections open and code paths warm in both systems."""
    commits = await paced(WARM_UP_JOBS, 50, insert)
    await asyncio.to_thread(collect_starts, started, set(commits), 60)


async def paced(
    count: int, rate: float, insert: Callable[[], Awaitable[tuple[str, float]]]
) -> dict[str, float]:
    """Call `insert` `count` times at `rate` per second; return job id -> commit time."""
    commits: dict[str, float] = {}
    begin = time.monotonic()
    for n in range(count):
        await asyncio.sleep(max(0.0, begin + n / rate - time.monotonic()))
        job_id, at = await insert()
        commits[job_id] = at
    return commits


async def wait_until(query: str, url: str, target: int, within: float) -> None:
    """Poll until `query` counts `target`. Rates come from the database's own timestamps, so
    the poll interval does not bias them; it is long so that polling costs the run little."""
    deadline = time.monotonic() + within
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        while True:
            row = await (await conn.execute(query)).fetchone()
            if row and row[0] >= target:
                return
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"only {row[0] if row else 0} of {target} jobs finished in {within} s"
                )
            await asyncio.sleep(0.25)


async def wal_lsn(url: str) -> str:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (await conn.execute("select pg_current_wal_lsn()::text")).fetchone()
        return str(row[0]) if row else "0/0"


async def wal_bytes(url: str, since: str) -> int:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        row = await (
            await conn.execute("select pg_wal_lsn_diff(pg_current_wal_lsn(), %s::pg_lsn)", (since,))
        ).fetchone()
        return int(row[0]) if row else 0


# -- jobhook --------------------------------------------------------------------------------------


def as_user(statement: sql.Composable, claims: str = CLAIMS) -> sql.Composed:
    """One transaction as the demo user, as PostgREST runs a request (role and JWT claims set
    for the transaction, the statement, commit), sent as a single message: one round trip per
    job, as pgqueuer's enqueue is."""
    return sql.SQL(
        "begin;"
        " select set_config('role', 'authenticated', true),"
        " set_config('request.jwt.claims', {claims}, true);"
        " {statement};"
        " commit"
    ).format(claims=sql.Literal(claims), statement=statement)


async def inserted_job(
    producer: psycopg.AsyncConnection[Any], statement: sql.Composed
) -> tuple[str, float]:
    """Run one `as_user` insert; the job's id and when its commit returned."""
    cursor = await producer.execute(statement)
    at = time.time()
    # The results of begin, set_config, insert and commit, in order.
    cursor.nextset()
    cursor.nextset()
    row = await cursor.fetchone()
    return str(row[0]) if row else "", at


INSERT_ONE = as_user(
    sql.SQL("insert into public.jobs (job_type) values ({}) returning id").format(
        sql.Literal(workers.NOOP)
    )
)


async def jobhook_figures(
    url: str,
    delivery_url: str,
    jobs: int,
    latency_jobs: int,
    rate: float,
    postmaster: int | None = None,
) -> Figures:
    port = free_port()
    with psycopg.connect(url, autocommit=True) as conn:
        vault.write(conn, vault.WEBHOOK_URL, f"http://127.0.0.1:{port}/webhooks/jobs")
        conn.execute("update jobhook.settings set max_unfinished_per_user = %s", (jobs * 2 + 10,))

    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as producer:

        def insert_one() -> Awaitable[tuple[str, float]]:
            return inserted_job(producer, INSERT_ONE)

        with child(workers.run_jobhook, url, delivery_url, port, True, None, True) as consumer:
            await warm_up(insert_one, consumer.started)
            commits = await paced(latency_jobs, rate, insert_one)
            stages = Stages()
            starts = await asyncio.to_thread(
                collect_starts, consumer.started, set(commits), 60, stages
            )
            # The last claim's report comes after its job's start.
            await asyncio.to_thread(note_stages, consumer.started, stages, 0.5)
        latencies = [(starts[job] - commits[job]) * 1000 for job in commits]

        with child(workers.run_jobhook, url, delivery_url, port, False) as consumer:
            sides = sides_of(consumer, postmaster)
            bulk = await _jobhook_bulk(url, producer, jobs, sides)
            rows = await _jobhook_row_by_row(url, producer, jobs, sides)

    ours = figures("jobhook", latencies, bulk, rows, jobs)
    ours.latency_breakdown_ms = stages.breakdown(commits, starts)
    return ours


async def _jobhook_run(
    url: str, jobs: int, insert: Callable[[], Awaitable[None]], sides: cpu.Sides | None
) -> Run:
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        await admin.execute("delete from public.jobs where job_type = %s", (workers.NOOP,))
        await admin.execute("truncate net._http_response")
    done = "select count(*) from public.jobs where job_type = 'bench_noop' and status = 'completed'"
    inserted_per_s, wal, spent = await measure(url, jobs, insert, done, sides)
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
        row = await (
            await admin.execute(
                "select extract(epoch from max(finished_at) - min(created_at)) from public.jobs"
                " where job_type = %s",
                (workers.NOOP,),
            )
        ).fetchone()
        elapsed = float(row[0]) if row and row[0] else float("nan")
        # The delivery worker records responses after the replies: give it a moment.
        await asyncio.sleep(0.5)
        requests = await (await admin.execute("select count(*) from net._http_response")).fetchone()
    return Run(jobs / elapsed, inserted_per_s, wal, spent, int(requests[0]) if requests else 0)


async def _jobhook_bulk(
    url: str, producer: psycopg.AsyncConnection[Any], jobs: int, sides: cpu.Sides | None
) -> Run:
    statement = as_user(
        sql.SQL(
            "insert into public.jobs (job_type, payload)"
            " select {}, '{{}}' from generate_series(1, {})"
        ).format(sql.Literal(workers.NOOP), sql.Literal(jobs))
    )

    async def insert() -> None:
        await producer.execute(statement)

    return await _jobhook_run(url, jobs, insert, sides)


async def _jobhook_row_by_row(
    url: str, producer: psycopg.AsyncConnection[Any], jobs: int, sides: cpu.Sides | None
) -> Run:
    async def insert() -> None:
        # One transaction per job, as PostgREST makes one of each request.
        for _ in range(jobs):
            await producer.execute(INSERT_ONE)

    return await _jobhook_run(url, jobs, insert, sides)


def figures(name: str, latencies: list[float], bulk: Run, rows: Run, jobs: int) -> Figures:
    return Figures(
        name=name,
        version=version(name),
        latency_ms=percentiles(latencies),
        throughput_jobs_per_s=round(bulk.jobs_per_s, 1),
        throughput_row_by_row_jobs_per_s=round(rows.jobs_per_s, 1),
        row_by_row_insert_jobs_per_s=round(rows.inserted_per_s, 1),
        wal_bytes_per_job=round(bulk.wal_bytes / jobs, 1),
        cpu_ms_per_job=(
            {"bulk": bulk.cpu_ms_per_job, "row_by_row": rows.cpu_ms_per_job}
            if bulk.cpu_ms_per_job and rows.cpu_ms_per_job
            else None
        ),
        webhook_requests=bulk.webhook_requests,
        webhook_requests_row_by_row=rows.webhook_requests,
    )


async def sweep_figures(url: str, finished_rows: int, live_rows: int = 1000) -> dict[str, float]:
    """jobhook.sweep() on a table of `finished_rows` finished jobs within retention and
    `live_rows` live ones: the sweep must cost what the live jobs cost, not the history."""
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("delete from public.jobs")
        await conn.execute(
            "insert into public.jobs (user_id, job_type, run_at)"
            " select %s, %s, now() + interval '1 day' from generate_series(1, %s)",
            (DEMO_USER_ID, workers.NOOP, finished_rows + live_rows),
        )
        # Fresh statistics, or the update below is planned for the table the earlier runs left
        # behind: after a 50,000-job run it was still running four minutes later.
        await conn.execute("analyze public.jobs")
        await conn.execute(
            "with old as (select id from public.jobs limit %s)"
            " update public.jobs j set status = 'completed', progress = 100, attempt = 1,"
            "  started_at = now(), finished_at = now() - random() * interval '20 days'"
            " from old where j.id = old.id",
            (finished_rows,),
        )
        await conn.execute("vacuum analyze public.jobs")
        timings = []
        for _ in range(20):
            started = time.perf_counter()
            await conn.execute("select jobhook.sweep()")
            timings.append((time.perf_counter() - started) * 1000)
        await conn.execute("delete from public.jobs")
    timings.sort()
    return {
        "finished_rows": finished_rows,
        "live_rows": live_rows,
        "median_ms": round(statistics.median(timings), 2),
        "max_ms": round(timings[-1], 2),
    }


# -- pgqueuer -------------------------------------------------------------------------------------


async def pgqueuer_figures(
    url: str, jobs: int, latency_jobs: int, rate: float, postmaster: int | None = None
) -> Figures:
    import asyncpg
    from pgqueuer.queries import Queries

    connection = await asyncpg.connect(url)
    queries = Queries.from_asyncpg_connection(connection)
    await queries.install()
    batch_size = 100

    async def enqueue_one() -> tuple[str, float]:
        # Timed from the moment the committed enqueue returns, as jobhook's insert is.
        [job_id] = await queries.enqueue(workers.NOOP, None)
        return str(job_id), time.time()

    try:
        with child(workers.run_pgqueuer, url, True, batch_size) as consumer:
            await warm_up(enqueue_one, consumer.started)
            commits = await paced(latency_jobs, rate, enqueue_one)
            starts = await asyncio.to_thread(collect_starts, consumer.started, set(commits), 60)
        latencies = [(starts[job] - commits[job]) * 1000 for job in commits]

        async def bulk() -> None:
            await queries.enqueue([workers.NOOP] * jobs, [None] * jobs, [0] * jobs)

        async def row_by_row() -> None:
            for _ in range(jobs):
                await queries.enqueue(workers.NOOP, None)

        with child(workers.run_pgqueuer, url, False, batch_size) as consumer:
            sides = sides_of(consumer, postmaster)
            bulk_run = await _pgqueuer_run(url, connection, jobs, bulk, sides)
            rows_run = await _pgqueuer_run(url, connection, jobs, row_by_row, sides)
    finally:
        await connection.close()
    return figures("pgqueuer", latencies, bulk_run, rows_run, jobs)


async def _pgqueuer_run(
    url: str,
    connection: Any,
    jobs: int,
    enqueue: Callable[[], Awaitable[None]],
    sides: cpu.Sides | None,
) -> Run:
    await connection.execute("truncate pgqueuer_log")
    done = "select count(*) from pgqueuer_log where status = 'successful'"
    inserted_per_s, wal, spent = await measure(url, jobs, enqueue, done, sides)
    elapsed = await connection.fetchval(
        "select extract(epoch from max(created) filter (where status = 'successful')"
        " - min(created) filter (where status = 'queued')) from pgqueuer_log"
    )
    return Run(jobs / float(elapsed), inserted_per_s, wal, spent)


# -- the concurrent scenario: many users, one row each, at an offered rate ------------------------


# How long after its commit a job may wait and still count as started promptly: beyond this only
# a rescue (the sweep, a minute later) would have started it.
PROMPT_SECONDS = 10.0


@dataclass(frozen=True)
class Concurrent:
    producers: int
    offered_jobs_per_s: float
    jobs_per_s: float
    latency_ms: dict[str, float]
    waited_for_sweep: int
    doorbell_requests_per_s: float | None = None
    pg_net_timeouts: int | None = None


def concurrent_latencies(
    commits: dict[str, float], starts: dict[str, float]
) -> tuple[dict[str, float], int]:
    latencies = [(starts[job] - at) * 1000 for job, at in commits.items() if job in starts]
    late = sum(
        1 for job, at in commits.items() if starts.get(job, float("inf")) - at > PROMPT_SECONDS
    )
    figures = percentiles(latencies) if len(latencies) > 1 else {}
    return {key: figures[key] for key in ("p50", "p99", "max") if key in figures}, late


async def producing(
    producers: int,
    rate: float,
    seconds: float,
    connect: Callable[[int], Awaitable[Callable[[], Awaitable[tuple[str, float]]]]],
) -> dict[str, float]:
    """`producers` concurrent producers, each inserting single jobs at rate / producers a
    second for `seconds`; job id -> commit time."""
    inserts = [await connect(n) for n in range(producers)]
    each = max(1, round(rate * seconds / producers))
    results = await asyncio.gather(*(paced(each, rate / producers, insert) for insert in inserts))
    return {job: at for result in results for job, at in result.items()}


async def jobhook_concurrent(
    url: str,
    delivery_url: str,
    producers: int,
    rate: float,
    seconds: float,
    net_latency_ms: int,
) -> Concurrent:
    users = [str(uuid.uuid4()) for _ in range(producers)]
    port = free_port()
    with psycopg.connect(url, autocommit=True) as conn:
        vault.write(conn, vault.WEBHOOK_URL, f"http://127.0.0.1:{port}/webhooks/jobs")
        conn.execute("delete from public.jobs")
        conn.execute("truncate net._http_response")
        conn.cursor().executemany(
            "insert into auth.users (id, email) values (%s, %s) on conflict do nothing",
            [(user, f"producer-{n}@bench.invalid") for n, user in enumerate(users)],
        )
    connections: list[psycopg.AsyncConnection[Any]] = []

    async def connect(n: int) -> Callable[[], Awaitable[tuple[str, float]]]:
        producer = await psycopg.AsyncConnection.connect(url, autocommit=True)
        connections.append(producer)
        statement = as_user(
            sql.SQL("insert into public.jobs (job_type) values ({}) returning id").format(
                sql.Literal(workers.NOOP)
            ),
            json.dumps({"sub": users[n], "role": "authenticated"}),
        )

        def insert() -> Awaitable[tuple[str, float]]:
            return inserted_job(producer, statement)

        return insert

    try:
        with child(workers.run_jobhook, url, delivery_url, port, True, net_latency_ms) as consumer:
            began = time.monotonic()
            commits = await producing(producers, rate, seconds, connect)
            inserting = time.monotonic() - began
            starts = await asyncio.to_thread(
                collect_some, consumer.started, set(commits), PROMPT_SECONDS + 5
            )
            await asyncio.sleep(1)  # the last replies are recorded after they arrive
            async with await psycopg.AsyncConnection.connect(url, autocommit=True) as admin:
                row = await (
                    await admin.execute(
                        "select (select count(*) from net._http_response)"
                        "     + (select count(*) from net.http_request_queue),"
                        "  (select count(*) from net._http_response"
                        "    where timed_out or error_msg ilike any (array['%%timeout%%',"
                        "                                              '%%timed out%%'])),"
                        "  (select extract(epoch from max(finished_at) - min(created_at))"
                        "     from public.jobs where status = 'completed')"
                    )
                ).fetchone()
    finally:
        for connection in connections:
            await connection.close()
    assert row is not None
    requests, timeouts, elapsed = int(row[0]), int(row[1]), float(row[2] or "nan")
    latency, late = concurrent_latencies(commits, starts)
    return Concurrent(
        producers=producers,
        offered_jobs_per_s=rate,
        jobs_per_s=round(len(starts) / elapsed, 1),
        latency_ms=latency,
        waited_for_sweep=late,
        doorbell_requests_per_s=round(requests / inserting, 1),
        pg_net_timeouts=timeouts,
    )


async def pgqueuer_concurrent(url: str, producers: int, rate: float, seconds: float) -> Concurrent:
    import asyncpg
    from pgqueuer.queries import Queries

    connections: list[Any] = []

    async def connect(n: int) -> Callable[[], Awaitable[tuple[str, float]]]:
        connection = await asyncpg.connect(url)
        connections.append(connection)
        queries = Queries.from_asyncpg_connection(connection)

        async def insert() -> tuple[str, float]:
            [job_id] = await queries.enqueue(workers.NOOP, None)
            return str(job_id), time.time()

        return insert

    admin = await asyncpg.connect(url)
    try:
        await admin.execute("truncate pgqueuer_log")
        with child(workers.run_pgqueuer, url, True, 100) as consumer:
            commits = await producing(producers, rate, seconds, connect)
            starts = await asyncio.to_thread(
                collect_some, consumer.started, set(commits), PROMPT_SECONDS + 5
            )
        elapsed = await admin.fetchval(
            "select extract(epoch from max(created) filter (where status = 'successful')"
            " - min(created) filter (where status = 'queued')) from pgqueuer_log"
        )
    finally:
        for connection in connections:
            await connection.close()
        await admin.close()
    latency, late = concurrent_latencies(commits, starts)
    return Concurrent(
        producers=producers,
        offered_jobs_per_s=rate,
        jobs_per_s=round(len(starts) / float(elapsed or "nan"), 1),
        latency_ms=latency,
        waited_for_sweep=late,
    )


# -- the run --------------------------------------------------------------------------------------


@contextlib.asynccontextmanager
async def bench_cluster() -> AsyncIterator[Cluster]:
    cluster = Cluster(Path(tempfile.mkdtemp(prefix="jobhook-bench-")), port=free_port())
    await asyncio.to_thread(cluster.start)
    try:
        await asyncio.to_thread(database.prepare, cluster.url, admin_url=cluster.admin_url)
        # The peers' databases are made as a project makes one on hosted: by postgres, which
        # then owns them.
        with psycopg.connect(cluster.url, autocommit=True) as conn:
            conn.execute(f"create database {PGQUEUER_DB}")
            conn.execute(f"create database {graphile.DATABASE}")
        yield cluster
    finally:
        await asyncio.to_thread(cluster.destroy)


@dataclass(frozen=True)
class Scenario:
    """The concurrent scenario's shape: `producers` users inserting single rows together at
    `rate` jobs a second for `seconds`, through pg_net's pace with `net_latency_ms` more per
    request (hosted Supabase to Modal is tens of milliseconds, not loopback)."""

    producers: int = 20
    rate: float = 2000
    seconds: float = 10
    net_latency_ms: int = 30


async def run(
    jobs: int,
    latency_jobs: int,
    rate: float,
    peer: bool = True,
    sweep_rows: int = 300_000,
    scenario: Scenario | None = Scenario(),
) -> dict[str, Any]:
    async with bench_cluster() as cluster:
        postmaster = cluster.postmaster_pid()
        ours = await jobhook_figures(
            cluster.url, cluster.admin_url, jobs, latency_jobs, rate, postmaster
        )
        concurrent = (
            await jobhook_concurrent(
                cluster.url,
                cluster.admin_url,
                scenario.producers,
                scenario.rate,
                scenario.seconds,
                scenario.net_latency_ms,
            )
            if scenario
            else None
        )
        sweep = await sweep_figures(cluster.url, sweep_rows) if sweep_rows else None
        theirs = (
            await pgqueuer_figures(
                cluster.database_url(PGQUEUER_DB), jobs, latency_jobs, rate, postmaster
            )
            if peer
            else None
        )
        graphile_figures = (
            await asyncio.to_thread(
                graphile.figures, cluster.database_url(graphile.DATABASE), jobs, latency_jobs, rate
            )
            if peer and graphile.available()
            else None
        )
        their_concurrent = (
            await pgqueuer_concurrent(
                cluster.database_url(PGQUEUER_DB),
                scenario.producers,
                scenario.rate,
                scenario.seconds,
            )
            if peer and scenario
            else None
        )
    result: dict[str, Any] = {
        "jobs": jobs,
        "latency_jobs": latency_jobs,
        "latency_ms": ours.latency_ms,
        "latency_breakdown_ms": ours.latency_breakdown_ms,
        "throughput_jobs_per_s": ours.throughput_jobs_per_s,
        "throughput_row_by_row_jobs_per_s": ours.throughput_row_by_row_jobs_per_s,
        "row_by_row_insert_jobs_per_s": ours.row_by_row_insert_jobs_per_s,
        "webhook_requests": ours.webhook_requests,
        "webhook_requests_row_by_row": ours.webhook_requests_row_by_row,
        "wal_bytes_per_job": ours.wal_bytes_per_job,
        "cpu_ms_per_job": ours.cpu_ms_per_job,
        "sweep": sweep,
        "concurrent": None,
        "peer": None,
        "peers": [],
        "ratio": None,
    }
    if concurrent is not None:
        result["concurrent"] = asdict(concurrent) | {
            "peer": asdict(their_concurrent) if their_concurrent else None
        }
    if theirs is not None:
        peer_figures = asdict(theirs)
        for key in ("webhook_requests", "webhook_requests_row_by_row", "latency_breakdown_ms"):
            peer_figures.pop(key)
        result["peer"] = peer_figures
        result["peers"] = [
            {
                key: peer_figures[key]
                for key in (
                    "name",
                    "version",
                    "latency_ms",
                    "throughput_jobs_per_s",
                    "throughput_row_by_row_jobs_per_s",
                )
            }
        ]
        if graphile_figures:
            result["peers"].append(graphile_figures)
        result["ratio"] = {
            "throughput": round(ours.throughput_jobs_per_s / theirs.throughput_jobs_per_s, 2),
            "throughput_row_by_row": round(
                ours.throughput_row_by_row_jobs_per_s / theirs.throughput_row_by_row_jobs_per_s, 2
            ),
            "latency_p50": round(ours.latency_ms["p50"] / theirs.latency_ms["p50"], 2),
            "wal_bytes_per_job": round(ours.wal_bytes_per_job / theirs.wal_bytes_per_job, 2),
        }
        if graphile_figures:
            result["ratio"]["graphile_throughput"] = round(
                ours.throughput_jobs_per_s / graphile_figures["throughput_jobs_per_s"], 2
            )
        if concurrent and their_concurrent:
            result["ratio"]["concurrent_throughput"] = round(
                concurrent.jobs_per_s / their_concurrent.jobs_per_s, 2
            )
        if ours.cpu_ms_per_job and theirs.cpu_ms_per_job:
            for run_name in ("bulk", "row_by_row"):
                result["ratio"][f"cpu_per_job_{run_name}"] = round(
                    ours.cpu_ms_per_job[run_name]["total"]
                    / theirs.cpu_ms_per_job[run_name]["total"],
                    2,
                )
    return result
