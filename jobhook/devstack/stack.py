"""The dev stack: the private database, the pg_net delivery worker and the app, as one unit.

`serve` runs the processes that live inside this Python process (delivery worker, uvicorn with
the app and its local executor) against a database that is already prepared; `DevStack` adds the
cluster around it for `jobhook dev` and `jobhook demo`. The tests use `serve` directly against
their own throwaway cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from secrets import token_urlsafe
from typing import Any

import structlog
import uvicorn
from fastapi import FastAPI

from jobhook.config import LOCAL_JWT_SECRET, Settings
from jobhook.devstack import database
from jobhook.devstack.cluster import Cluster, ClusterError, port_is_listening, server_reachable
from jobhook.devstack.delivery import RESTART_DELAY, DeliveryWorker
from jobhook.jobs import SetupError

log = structlog.get_logger("jobhook.devstack.stack")

DB_PORT = 54322
APP_HOST = "127.0.0.1"
APP_PORT = 8000
# Where a running stack writes its URLs, in its data dir: how the client verbs find it.
RECORD_NAME = "stack.json"


class PortTaken(ClusterError):
    """A port the stack needs is held by another process; nothing was created or started."""

    def __init__(self, what: str, port: int, option: str) -> None:
        self.port = port
        variable = option.removeprefix("--").upper().replace("-", "_")
        super().__init__(
            f"port {port} ({what}) is taken by another process "
            f"(`ss -ltnp 'sport = :{port}'` shows which)\n"
            f"choose another: `make dev {variable}=<port>` (or make demo), or `{option} <port>`"
        )


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
    settings: Settings,
    *,
    delivery_url: str,
    host: str = APP_HOST,
    port: int = APP_PORT,
    app: FastAPI | None = None,
) -> AsyncIterator[Served]:
    """Run the delivery worker and the app until the block ends; ready when it is entered.

    The delivery worker connects with `delivery_url`: pg_net's worker connects as pg_net.username,
    which unset is the bootstrap superuser (supabase/pg_net v0.20.4 src/worker.c:258, 508), so
    the dev stack passes its supabase_admin URL (Cluster.admin_url).
    """
    from functions.app import create_app  # the app imports the handlers: only when serving

    # Logging is the caller's to configure (the CLI does, once).
    app = app or create_app(settings, configure_logging=False)
    delivery = DeliveryWorker(delivery_url, **delivery_options(os.environ))
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
    def root(self) -> Path:
        return self.data_dir or self.project_dir / ".jobhook"

    @property
    def cluster(self) -> Cluster:
        return Cluster(server_reachable(self.root), port=self.db_port)

    @property
    def record_path(self) -> Path:
        return self.root / RECORD_NAME

    @property
    def app_url(self) -> str:
        return f"http://{self.app_host}:{self.app_port}"

    @property
    def webhook_url(self) -> str:
        return f"http://{self.app_host}:{self.app_port}/webhooks/jobs"

    def check_ports(self) -> None:
        """Before anything is created: a port held by someone else (a `supabase start`,
        another checkout's stack) must leave no data dir and no half-started stack behind."""
        cluster = self.cluster
        ours = cluster.initialized() and cluster.running()
        if not ours and port_is_listening(self.db_port):
            raise PortTaken("database", self.db_port, "--db-port")
        if port_is_listening(self.app_port, self.app_host):
            raise PortTaken("app", self.app_port, "--app-port")

    @contextlib.asynccontextmanager
    async def running(self) -> AsyncIterator[Served]:
        """Start everything, and stop everything this call started when the block ends."""
        cluster = self.cluster
        started_cluster = not (cluster.initialized() and cluster.running())
        self.check_ports()
        handler_env = load_env_file(self.project_dir / ".env")
        if handler_env:
            log.info("handler variables from .env", names=sorted(handler_env))
        await asyncio.to_thread(cluster.start)
        try:
            secrets = [s for s in os.environ.get("JOBHOOK_WEBHOOK_SECRETS", "").split(",") if s]
            prepared = await asyncio.to_thread(
                database.prepare,
                cluster.url,
                admin_url=cluster.admin_url,
                project_dir=self.project_dir,
                webhook_url=self.webhook_url,
                webhook_secret=secrets[0] if secrets else None,
            )
            for migration in prepared.applied:
                log.info("migration applied", version=migration.version, name=migration.name)
            # The dev stack is its own project, whatever the shell's SUPABASE_URL names: tokens
            # from `jobhook token` (the supabase CLI's local secret), operator details open.
            # The dashboard's sign-in here: the service key, made for this run unless the shell
            # sets one, and shown with the dashboard's address (it is nobody's default).
            api_key = os.environ.get("JOBHOOK_API_KEY") or token_urlsafe(32)
            settings = Settings(
                DATABASE_URL=cluster.url,
                SUPABASE_URL=None,
                SUPABASE_JWT_SECRET=LOCAL_JWT_SECRET,
                JOBHOOK_PUBLIC_OPERATOR_ENDPOINTS=True,
                JOBHOOK_API_KEY=api_key,
            )
            async with serve(
                settings,
                delivery_url=cluster.admin_url,
                host=self.app_host,
                port=self.app_port,
            ) as served:
                print(f"  dashboard {served.url}/dashboard  (sign in with {api_key})", flush=True)
                self._record(cluster)
                try:
                    yield served
                finally:
                    self.record_path.unlink(missing_ok=True)
        finally:
            if started_cluster:
                await asyncio.to_thread(cluster.stop)

    def _record(self, cluster: Cluster) -> None:
        """Write the stack's URLs where `submit`, `jobs`, `types` and `sweep` look for them."""
        record = {
            "database_url": cluster.url,
            # The superuser's, for what only the platform may do (as supabase_admin on hosted).
            "admin_url": cluster.admin_url,
            "app_url": self.app_url,
            "webhook_url": self.webhook_url,
            "pid": os.getpid(),
        }
        self.record_path.parent.mkdir(parents=True, exist_ok=True)
        self.record_path.write_text(json.dumps(record, indent=2) + "\n")


def load_env_file(path: Path) -> dict[str, str]:
    """Give handlers the variables of the git-ignored `.env` (their API keys and the like), as
    Modal gives them a deployment's secret; what the shell already exports wins."""
    from dotenv import dotenv_values

    if not path.exists():
        return {}
    values = {k: v for k, v in dotenv_values(path).items() if v}
    for key, value in values.items():
        os.environ.setdefault(key, value)
    return values


def recorded(root: Path) -> dict[str, str] | None:
    """The URLs of the dev stack running from `root`, or None when none runs there now."""
    try:
        record = json.loads((root / RECORD_NAME).read_text())
        pid = int(record["pid"])
        os.kill(pid, 0)  # a record left by a stack that was killed names a process that is gone
    except (OSError, ValueError, KeyError, TypeError):
        return None
    return {key: str(value) for key, value in record.items()}
