"""The dev stack: the private database, the pg_net delivery worker and the app, as one unit.

`serve` runs the processes that live inside this Python process (delivery worker, uvicorn with
the app and its local executor) against a database that is already prepared; `DevStack` adds the
cluster around it for `jobhook dev` and `jobhook demo`. The tests use `serve` directly against
their own throwaway cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI

from jobhook.config import LOCAL_JWT_SECRET, Settings
from jobhook.devstack import database
from jobhook.devstack.cluster import Cluster, server_reachable
from jobhook.devstack.delivery import RESTART_DELAY, DeliveryWorker
from jobhook.jobs import SetupError

log = structlog.get_logger("jobhook.devstack.stack")

DB_PORT = 54322
APP_HOST = "127.0.0.1"
APP_PORT = 8000


class QuietServer(uvicorn.Server):
    """uvicorn without its own signal handling: the stack decides when to stop."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


def app_server(app: FastAPI, host: str, port: int) -> QuietServer:
    return QuietServer(
        uvicorn.Config(app, host=host, port=port, log_config=None, lifespan="on", access_log=False)
    )


def delivery_options(environ: Mapping[str, str]) -> dict[str, Any]:
    """The delivery worker's pacing, from the environment of `jobhook dev`.

    JOBHOOK_DEV_NET_PACED=1 sends as pg_net's own worker does (a batch at a time, a pause
    between batches); JOBHOOK_DEV_NET_LATENCY_MS adds that round trip to every request, as a
    hosted database pays to reach a deployed app. Both are for trying the dev stack under
    hosted-like delivery; neither exists outside it.
    """
    options: dict[str, Any] = {}
    if environ.get("JOBHOOK_DEV_NET_PACED", "").lower() in {"1", "true", "yes", "on"}:
        options["paced"] = True
    if latency := environ.get("JOBHOOK_DEV_NET_LATENCY_MS"):
        milliseconds = int(latency)
        if not 0 <= milliseconds <= 60_000:
            raise ValueError("JOBHOOK_DEV_NET_LATENCY_MS must be between 0 and 60000")
        options["latency"] = milliseconds / 1000
    return options


async def supervise(
    name: str, run: Callable[[], Awaitable[None]], *, delay: float = RESTART_DELAY
) -> None:
    """Run `run` until cancelled, starting it again whenever it returns or fails."""
    while True:
        try:
            await run()
            log.error(f"{name} stopped, starting it again")
        except Exception as exc:
            log.error(f"{name} failed, starting it again", error=repr(exc))
        await asyncio.sleep(delay)


@dataclass
class Served:
    app: FastAPI
    url: str


@contextlib.asynccontextmanager
async def serve(
    settings: Settings, *, host: str = APP_HOST, port: int = APP_PORT, app: FastAPI | None = None
) -> AsyncIterator[Served]:
    """Run the delivery worker and the app until the block ends; ready when it is entered."""
    from functions.app import create_app  # the app imports the handlers: only when serving

    # Logging is the caller's to configure (the CLI does, once).
    app = app or create_app(settings, configure_logging=False)
    delivery = DeliveryWorker(settings.database_url, **delivery_options(os.environ))
    server = app_server(app, host, port)
    tasks = [
        asyncio.create_task(supervise("delivery worker", delivery.run)),
        asyncio.create_task(server.serve()),
    ]
    try:
        async with asyncio.timeout(60):
            while not server.started:
                if tasks[1].done():
                    tasks[1].result()  # uvicorn gave up (port taken...): raise its error
                    raise SetupError(
                        f"the app did not start on {host}:{port}: its log above says why"
                    )
                await asyncio.sleep(0.01)
            await delivery.ready.wait()
            await app.state.runtime.wait_ready()
        yield Served(app=app, url=f"http://{host}:{port}")
    finally:
        server.should_exit = True
        with contextlib.suppress(asyncio.CancelledError, Exception):
            # uvicorn's shutdown includes the executor's grace period for running attempts.
            await asyncio.wait_for(asyncio.shield(tasks[1]), settings.shutdown_grace_seconds + 10)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


@dataclass
class DevStack:
    project_dir: Path = database.PROJECT_DIR
    db_port: int = DB_PORT
    app_host: str = APP_HOST
    app_port: int = APP_PORT
    data_dir: Path | None = None  # default: .jobhook/ in the project, git-ignored

    @property
    def cluster(self) -> Cluster:
        root = self.data_dir or self.project_dir / ".jobhook"
        return Cluster(server_reachable(root), port=self.db_port)

    @property
    def webhook_url(self) -> str:
        return f"http://{self.app_host}:{self.app_port}/webhooks/jobs"

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Served]:
        """Start everything, and stop everything this call started when the block ends."""
        cluster = self.cluster
        started_cluster = not (cluster.initialized() and cluster.running())
        await asyncio.to_thread(cluster.start)
        try:
            secrets = [s for s in os.environ.get("JOBHOOK_WEBHOOK_SECRETS", "").split(",") if s]
            prepared = await asyncio.to_thread(
                database.prepare,
                cluster.url,
                project_dir=self.project_dir,
                webhook_url=self.webhook_url,
                webhook_secret=secrets[0] if secrets else None,
            )
            for migration in prepared.applied:
                log.info("migration applied", version=migration.version, name=migration.name)
            # The dev stack is its own project, whatever the shell's SUPABASE_URL names: tokens
            # from `jobhook token` (the supabase CLI's local secret), operator details open.
            settings = Settings(
                DATABASE_URL=cluster.url,
                SUPABASE_URL=None,
                SUPABASE_JWT_SECRET=LOCAL_JWT_SECRET,
                JOBHOOK_PUBLIC_OPERATOR_ENDPOINTS=True,
            )
            async with serve(settings, host=self.app_host, port=self.app_port) as served:
                yield served
        finally:
            if started_cluster:
                await asyncio.to_thread(cluster.stop)
