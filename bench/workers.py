"""The consumers, each in a process of its own, as they would run in production.

The benchmark's producer (the client inserting jobs) lives in the parent process; each system's
consumer side runs in a child: for jobhook the delivery worker and the app with its local
executor (the dev stack), for pgqueuer a QueueManager. A handler that starts reports the wall
clock time to the parent through a queue, so insert-to-start latency spans processes just as it
spans machines in production.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from multiprocessing.queues import Queue
from multiprocessing.synchronize import Event
from typing import Any

import uvloop
from pydantic import BaseModel

NOOP = "bench_noop"


class Empty(BaseModel):
    pass


def run_jobhook(
    started: Queue[Any],
    stop: Event,
    database_url: str,
    delivery_url: str,
    port: int,
    report_starts: bool,
    net_latency_ms: int | None = None,
    report_stages: bool = False,
) -> None:
    """Child process: jobhook's delivery worker (connected with `delivery_url`, as pg_net's
    worker connects as the superuser) and app, with a no-op job type; with `net_latency_ms`,
    the delivery worker keeps pg_net's pace and adds that much per request. `report_stages`
    also reports each doorbell's arrival and each claim (a few jobs only: the reports cost the
    consumer time of its own)."""
    import os

    if net_latency_ms is not None:
        os.environ["JOBHOOK_DEV_NET_PACED"] = "1"
        os.environ["JOBHOOK_DEV_NET_LATENCY_MS"] = str(net_latency_ms)
    from jobhook import logs
    from jobhook.config import Settings
    from jobhook.context import JobContext
    from jobhook.devstack.stack import serve
    from jobhook.registry import Registry

    logs.configure(level="WARNING")
    registry = Registry()

    @registry.job(NOOP, params=Empty, max_attempts=3, timeout_seconds=60)
    async def noop(params: Empty, ctx: JobContext) -> None:
        if report_starts:
            started.put((str(ctx.job_id), time.time()))
        if report_stages:
            started.put(("claimed", str(ctx.job_id), ctx.job.claimed_at))

    async def main() -> None:
        from functions.app import create_app

        settings = Settings(
            DATABASE_URL=database_url,
            JOBHOOK_MAX_CONCURRENCY="2000",
            JOBHOOK_MAX_CONCURRENCY_PER_TYPE="2000",
        )
        app = create_app(settings, job_registry=registry, configure_logging=False)
        if report_stages:
            app.add_middleware(NotingDoorbells, started=started)
        async with serve(settings, delivery_url=delivery_url, port=port, app=app):
            started.put(("ready", time.time()))
            await asyncio.to_thread(stop.wait)

    uvloop.run(main())


class NotingDoorbells:
    """ASGI middleware: reports when each doorbell request reached the app, and the ids it
    named, so the bench can split a job's wait into its stages."""

    def __init__(self, app: Any, started: Queue[Any]) -> None:
        self.app = app
        self.started = started

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["path"] != "/webhooks/jobs":
            await self.app(scope, receive, send)
            return
        arrived = time.time()
        body = bytearray()

        async def reading() -> Any:
            message = await receive()
            if message["type"] == "http.request":
                body.extend(message.get("body", b""))
                if not message.get("more_body"):
                    with contextlib.suppress(ValueError, KeyError, TypeError):
                        ids = [job["id"] for job in json.loads(body)["jobs"]]
                        self.started.put(("request", ids, arrived))
            return message

        await self.app(scope, reading, send)


def run_pgqueuer(
    started: Queue[Any], stop: Event, database_url: str, report_starts: bool, batch_size: int
) -> None:
    """Child process: a pgqueuer QueueManager over an asyncpg pool, with a no-op entrypoint."""
    from datetime import timedelta

    import asyncpg
    from pgqueuer import PgQueuer

    async def main() -> None:
        pool = await asyncpg.create_pool(database_url, min_size=2, max_size=10)
        pgq = PgQueuer.from_asyncpg_pool(pool)

        @pgq.entrypoint(NOOP)
        async def noop(job: Any) -> None:
            if report_starts:
                started.put((str(job.id), time.time()))

        async def stop_when_told() -> None:
            await asyncio.to_thread(stop.wait)
            pgq.shutdown.set()

        watcher = asyncio.create_task(stop_when_told())
        started.put(("ready", time.time()))
        with contextlib.suppress(asyncio.CancelledError):
            await pgq.qm.run(batch_size=batch_size, dequeue_timeout=timedelta(seconds=5))
        watcher.cancel()
        await pool.close()

    uvloop.run(main())
