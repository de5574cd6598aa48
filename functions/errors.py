"""One error shape for every 4xx and 5xx: {"error": {code, message, details}, "request_id"}."""

from __future__ import annotations

from collections.abc import Mapping
from http import HTTPMethod, HTTPStatus
from typing import Any

import psycopg
import structlog
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from jobhook.jobs import ClientError

log = structlog.get_logger("jobhook.api")


class ApiError(ClientError):
    """An error the client can act on, raised by a route; `code` is stable, `message` says what
    to do. The runtime's own client errors (jobhook.jobs.ClientError) are answered the same way."""

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers


def error_response(
    request: Request,
    status: int,
    code: str,
    message: str,
    details: Any = None,
    headers: Mapping[str, str] | None = None,
) -> JSONResponse:
    request_id = getattr(request.state, "request_id", None)
    return JSONResponse(
        {
            "error": {"code": code, "message": message, "details": details},
            "request_id": request_id,
        },
        status_code=status,
        headers=headers,
    )


def install(app: FastAPI) -> None:
    @app.exception_handler(ClientError)
    async def client_error(request: Request, exc: ClientError) -> JSONResponse:
        return error_response(request, exc.status, exc.code, str(exc), exc.details, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid_request(request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = [
            {
                "loc": [str(part) for part in error["loc"]],
                "message": error["msg"],
                "type": error["type"],
            }
            for error in exc.errors()
        ]
        malformed = any(p["type"] == "json_invalid" for p in problems)
        return error_response(
            request,
            422 if not malformed else 400,
            "malformed_json" if malformed else "invalid_request",
            "the request body is not valid JSON"
            if malformed
            else "; ".join(f"{'.'.join(p['loc'])}: {p['message']}" for p in problems),
            problems,
        )

    @app.exception_handler(StarletteHTTPException)
    async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        phrase = HTTPStatus(exc.status_code).phrase
        code = phrase.lower().replace(" ", "_").replace("-", "_")
        message = exc.detail if isinstance(exc.detail, str) else phrase
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            # Starlette names the methods of the first route for this path only, and none when
            # the route sits in an included router; a path served by several routes (GET and
            # POST /jobs) must list them all.
            allowed = _methods_for_path(app, request) or [
                method.strip() for method in headers.get("Allow", "").split(",") if method.strip()
            ]
            headers["Allow"] = ", ".join(allowed)
            message = f"{request.method} is not allowed here; use {' or '.join(allowed)}"
        return error_response(request, exc.status_code, code, message, headers=headers)

    @app.exception_handler(psycopg.errors.LockNotAvailable)
    @app.exception_handler(psycopg.errors.QueryCanceled)
    async def database_busy(request: Request, exc: Exception) -> JSONResponse:
        # The call ran into its lock or statement timeout (jobhook.store.Limits).
        log.warning("database call timed out", error=str(exc))
        return error_response(
            request,
            503,
            "database_busy",
            "the database did not answer in time (a lock held elsewhere, or a slow query); "
            "retry shortly",
            headers={"Retry-After": "2"},
        )

    @app.exception_handler(psycopg.OperationalError)
    async def database_unreachable(request: Request, exc: Exception) -> JSONResponse:
        log.warning("database unreachable", error=str(exc))
        return error_response(
            request,
            503,
            "database_unavailable",
            "the database is unreachable; retry shortly",
            headers={"Retry-After": "5"},
        )

    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error", path=request.url.path)
        return error_response(
            request, 500, "internal_error", "an unexpected error occurred; it has been logged"
        )


def _methods_for_path(app: FastAPI, request: Request) -> list[str]:
    # Ask the router itself, method by method: included routers nest their routes (and add
    # their prefixes) out of sight of a walk over `app.routes`.
    allowed = []
    for method in HTTPMethod:
        scope = {**request.scope, "method": method.value}
        if any(route.matches(scope)[0] == Match.FULL for route in app.router.routes):
            allowed.append(method.value)
    return allowed
