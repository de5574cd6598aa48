"""Liveness and readiness. /health answers while the process lives; the others check what
the app depends on and answer 503 with the reason when something is missing."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from functions.auth import Authenticator, get_authenticator
from functions.deps import RuntimeDep
from jobhook import vault

router = APIRouter(tags=["health"])
# A check must answer before the load balancer's own timeout, not after the pool's 30 s.
CHECK_TIMEOUT = 2.0


@router.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/health/db", responses={503: {"description": "the database is unreachable"}})
async def health_db(runtime: RuntimeDep) -> Any:
    try:
        await runtime.store.ping(acquire_within=CHECK_TIMEOUT)
    except (psycopg.Error, OSError, PoolTimeout) as exc:
        return _unavailable(f"database unreachable: {exc}")
    return {"status": "ok", "database": "ok"}


@router.get("/ready", responses={503: {"description": "not ready, with the reason"}})
async def ready(
    runtime: RuntimeDep, authenticator: Annotated[Authenticator, Depends(get_authenticator)]
) -> Any:
    try:
        await runtime.store.ping(acquire_within=CHECK_TIMEOUT)
        url = await runtime.store.vault_secret(vault.WEBHOOK_URL, acquire_within=CHECK_TIMEOUT)
        secret = await runtime.store.vault_secret(
            vault.WEBHOOK_SECRET, acquire_within=CHECK_TIMEOUT
        )
    except (psycopg.Error, OSError, PoolTimeout) as exc:
        return _unavailable(f"database unreachable: {exc}")
    missing = [
        name
        for name, value in ((vault.WEBHOOK_URL, url), (vault.WEBHOOK_SECRET, secret))
        if not value
    ]
    if missing:
        return _unavailable(
            f"Vault secret(s) missing: {', '.join(missing)}; jobs cannot be dispatched "
            "(set [db.vault] in supabase/config.toml, or vault.create_secret)"
        )
    if runtime.not_ready:
        return _unavailable(runtime.not_ready)
    if problem := authenticator.not_configured:
        return _unavailable(problem)
    return {"status": "ok", "database": "ok", "dispatch": "configured"}


def _unavailable(reason: str) -> JSONResponse:
    return JSONResponse({"status": "unavailable", "reason": reason}, status_code=503)
