"""Liveness and readiness. /health answers while the process lives; the others check what
the app depends on and answer 503 when something is missing. The reason (which can quote the
database's own error) goes only to operators: see functions.auth.operator_details."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from functions.auth import Authenticator, OperatorDetails, get_authenticator
from functions.deps import RuntimeDep
from jobhook import vault
from jobhook.runtime import Runtime

router = APIRouter(tags=["health"])
# A check must answer before the load balancer's own timeout, not after the pool's 30 s.
CHECK_TIMEOUT = 2.0


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


OPERATOR: dict[int | str, dict[str, Any]] = {
    401: {"description": "X-API-Key sent, but not the service key"},
    503: {"description": "not ready; with the reason for operators"},
}


@router.get("/health/db", responses=OPERATOR)
async def health_db(runtime: RuntimeDep, details: OperatorDetails) -> Any:
    """Whether the database answers; the details (and the error) need X-API-Key."""
    try:
        await runtime.store.ping(acquire_within=CHECK_TIMEOUT)
    except (psycopg.Error, OSError, PoolTimeout) as exc:
        return _unavailable(f"database unreachable: {exc}", details)
    return {"status": "ok", "database": "ok"} if details else {"status": "ok"}


@router.get("/ready", responses=OPERATOR)
async def ready(
    runtime: RuntimeDep,
    authenticator: Annotated[Authenticator, Depends(get_authenticator)],
    details: OperatorDetails,
) -> Any:
    """Whether the app can take jobs; why not, for callers with X-API-Key."""
    reason = await _not_ready(runtime, authenticator)
    if reason is not None:
        return _unavailable(reason, details)
    if not details:
        return {"status": "ok"}
    return {"status": "ok", "database": "ok", "dispatch": "configured"}


async def _not_ready(runtime: Runtime, authenticator: Authenticator) -> str | None:
    try:
        found = await runtime.store.readiness(acquire_within=CHECK_TIMEOUT)
    except (psycopg.Error, OSError, PoolTimeout) as exc:
        return f"database unreachable: {exc}"
    missing = [
        name
        for name, value in ((vault.WEBHOOK_URL, found.url), (vault.WEBHOOK_SECRET, found.secret))
        if not value
    ]
    if missing:
        return (
            f"Vault secret(s) missing: {', '.join(missing)}; jobs cannot be dispatched "
            "(set [db.vault] in supabase/config.toml, or vault.create_secret)"
        )
    if found.foreign_queue_triggers:
        return (
            "no doorbell rings while net.http_request_queue has triggers jobhook did not make: "
            f"{', '.join(found.foreign_queue_triggers)} (drop them: drop trigger <name> on "
            "net.http_request_queue)"
        )
    secret = found.secret
    if (
        secret is not None
        and runtime.verifier is not None
        and not runtime.accepts(secret)
        and not runtime.adopt(secret)
    ):
        return (
            f"the database signs doorbells with a secret this app does not accept: Vault's "
            f"{vault.WEBHOOK_SECRET} is not among JOBHOOK_WEBHOOK_SECRETS; every doorbell "
            "is refused with 401 (add the new secret to the app, or put Vault's back)"
        )
    return runtime.not_ready or authenticator.not_configured


def _unavailable(reason: str, details: bool) -> JSONResponse:
    body = {"status": "unavailable", "reason": reason} if details else {"status": "unavailable"}
    return JSONResponse(body, status_code=503)
