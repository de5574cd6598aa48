"""Liveness and readiness. /health answers while the process lives; the others check what
the app depends on and answer 503 when something is missing. The reason (which can quote the
database's own error) goes only to operators: see functions.auth.operator_details. /ready asks
jobhook.health, the check the dashboard's panel and `jobhook doctor` use too."""

from __future__ import annotations

from typing import Annotated, Any

import psycopg
from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse
from psycopg_pool import PoolTimeout

from functions.auth import Authenticator, OperatorDetails, get_authenticator
from functions.deps import RuntimeDep
from jobhook import health as checks
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
    report = await app_health(runtime, authenticator)
    reason = report.not_ready
    if reason is not None:
        return _unavailable(reason, details)
    if not details:
        return {"status": "ok"}
    return {"status": "ok", "database": "ok", "dispatch": "configured"}


async def app_health(runtime: Runtime, authenticator: Authenticator) -> checks.Report:
    """jobhook.health's report for this app, with what only the app knows: whether it has
    started, can verify tokens, and takes up a signing secret rotated in Vault."""
    report = await checks.check(
        runtime.store, checks.expectations_of(runtime), acquire_within=CHECK_TIMEOUT
    )
    if report.not_ready is not None and await _adopted_rotated_secret(runtime, report):
        report = report.without("signing_secret")
    for name, problem in (("app", runtime.not_ready), ("auth", authenticator.not_configured)):
        severity = checks.Severity.OK if problem is None else checks.Severity.FAULT
        report.checks.append(
            checks.Check(name, severity, problem or "ready", None, blocks_ready=True)
        )
    return report


async def _adopted_rotated_secret(runtime: Runtime, report: checks.Report) -> bool:
    """A signing secret the app does not accept, while it reads its secret from Vault, is a
    rotation to follow: one more round trip, on this rare path only."""
    if not any(
        c.name == "signing_secret" and c.severity is checks.Severity.FAULT for c in report.checks
    ):
        return False
    if runtime.settings.webhook_secrets:
        return False  # the app's secrets are its settings: nothing in Vault to follow
    try:
        secrets = await runtime.verify_secrets()
    except (psycopg.Error, OSError, PoolTimeout):
        return False
    return bool(secrets) and (runtime.accepts(secrets[0]) or runtime.adopt(secrets[0]))


def _unavailable(reason: str, details: bool) -> JSONResponse:
    body = {"status": "unavailable", "reason": reason} if details else {"status": "unavailable"}
    return JSONResponse(body, status_code=503)
