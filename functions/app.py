"""The one FastAPI app: served by uvicorn locally and by `@modal.asgi_app` on Modal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import handlers
from functions import errors, health, webhooks
from functions.requests import RequestIdMiddleware
from functions.runtime import ExecutorFactory, Runtime
from jobhook import logs
from jobhook.config import Settings
from jobhook.registry import Registry, registry


def create_app(
    settings: Settings | None = None,
    *,
    executor_factory: ExecutorFactory | None = None,
    job_registry: Registry | None = None,
    configure_logging: bool = True,
) -> FastAPI:
    settings = settings or Settings()
    if job_registry is None:
        handlers.load_all()
        job_registry = registry
    if configure_logging:
        logs.configure()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        runtime = Runtime.create(settings, job_registry)
        async with runtime.running(executor_factory):
            app.state.runtime = runtime
            yield

    app = FastAPI(
        title="jobhook",
        summary="Background jobs as Postgres rows on Supabase, run on Modal.",
        version="0.1.0",
        lifespan=lifespan,
    )
    errors.install(app)
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(webhooks.router)

    @app.get("/metrics", include_in_schema=False)
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
