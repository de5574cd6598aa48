"""The one FastAPI app: served by uvicorn locally and by `@modal.asgi_app` on Modal."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

import handlers
from functions import dashboard, errors, health, job_routes, service, webhooks
from functions.auth import Authenticator, OperatorOnly
from functions.openapi import document as openapi_document
from functions.ratelimit import RateLimiter
from functions.requests import BodyLimitMiddleware, RequestIdMiddleware
from jobhook import logs
from jobhook.config import Settings
from jobhook.doorbell import MAX_BODY_BYTES
from jobhook.registry import Registry, registry
from jobhook.runtime import ExecutorFactory, Runtime

DESCRIPTION = """
Create jobs, follow their progress and read their results. Every `/jobs` request carries a
Supabase access token (`Authorization: Bearer <jwt>`) and sees only its user's jobs: the same
rows supabase-js reads under row-level security. `/service` is for trusted backends
(`X-API-Key`). Errors share one shape: `{"error": {"code", "message", "details"}, "request_id"}`.
"""


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
        description=DESCRIPTION,
        version="0.1.0",
        lifespan=lifespan,
    )
    app.state.authenticator = Authenticator(settings)
    app.state.rate_limiter = RateLimiter(settings.rate_limit)
    errors.install(app)
    # Outermost last: the request id exists before anything else can answer.
    app.add_middleware(BodyLimitMiddleware, max_bytes=MAX_BODY_BYTES)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST"],
            allow_headers=["Authorization", "Content-Type", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Retry-After", "Location"],
            max_age=600,
        )
    app.add_middleware(RequestIdMiddleware)
    app.include_router(health.router)
    app.include_router(job_routes.router)
    app.include_router(service.router)
    app.include_router(webhooks.router)
    dashboard.install(app, settings)

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = openapi_document(app, job_registry)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]

    @app.get("/metrics", include_in_schema=False, dependencies=[OperatorOnly])
    async def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    return app
