"""The app (and, unless told otherwise, the delivery worker) as a process of its own, so the
chaos suite can kill it with -9, or stop it with Ctrl-C (SIGINT) or SIGTERM as a deploy does.
`python -m tests.chaos.app_process URL ADMIN_URL PORT [--no-delivery]`: the delivery worker
connects with ADMIN_URL, the superuser's, as pg_net's worker does."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import uvloop

from functions.app import create_app
from jobhook import logs
from jobhook.config import LOCAL_JWT_SECRET, Settings
from jobhook.devstack.delivery import DeliveryWorker
from jobhook.devstack.stack import app_server
from tests.chaos.handlers import registry


async def main(database_url: str, admin_url: str, port: int, delivery: bool) -> None:
    os.environ["CHAOS_DATABASE_URL"] = database_url
    # As the dev stack: tokens signed with the supabase CLI's local secret are accepted, so
    # /ready (which the suite waits on) finds a way to verify them.
    settings = Settings(DATABASE_URL=database_url, SUPABASE_JWT_SECRET=LOCAL_JWT_SECRET)
    app = create_app(settings, job_registry=registry, configure_logging=False)
    server = app_server(app, "127.0.0.1", port)

    def stop() -> None:
        server.should_exit = True

    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop)
    worker = asyncio.create_task(DeliveryWorker(admin_url).run()) if delivery else None
    # The app's shutdown (its lifespan) hands back the attempts it could not finish in time.
    await server.serve()
    if worker is not None:
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)


if __name__ == "__main__":
    logs.configure(level="WARNING")
    uvloop.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), "--no-delivery" not in sys.argv))
