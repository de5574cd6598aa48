"""/service: endpoints for trusted backends, authenticated by the X-API-Key header.

Enqueueing for a user still runs as that user, so the policies and quotas that guard their jobs
apply; only the operator's views (stats, a sweep now) see across users.
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Response

from functions.auth import ServiceKey
from functions.deps import RuntimeDep
from functions.errors import ApiError
from functions.job_routes import ERRORS, ClientDep, enqueue
from functions.schemas import ErrorResponse, Job, QueueStats, ServiceJobCreate
from jobhook.client import Caller

router = APIRouter(prefix="/service", tags=["service"], dependencies=[ServiceKey])

SERVICE_ERRORS: dict[int | str, dict[str, Any]] = {
    **ERRORS,
    401: {"model": ErrorResponse, "description": "missing or wrong X-API-Key"},
    403: {"model": ErrorResponse, "description": "JOBHOOK_API_KEY is not set"},
}


@router.post(
    "/jobs",
    status_code=201,
    response_model=Job,
    responses={
        **SERVICE_ERRORS,
        200: {"model": Job, "description": "the job created earlier with this idempotency key"},
        404: {"model": ErrorResponse, "description": "no such user"},
        409: {"model": ErrorResponse, "description": "the idempotency key is taken"},
        429: {"model": ErrorResponse, "description": "the user has too many unfinished jobs"},
    },
)
async def create_job_for_user(
    body: ServiceJobCreate, client: ClientDep, runtime: RuntimeDep, response: Response
) -> Any:
    """Enqueue a job on behalf of a user; its parameters are checked as for `POST /jobs`."""
    return await enqueue(
        client,
        Caller.user(body.user_id),
        body,
        response,
        job_types=runtime.registry,
        unknown_user=ApiError(404, "unknown_user", f"no user {body.user_id} in auth.users"),
    )


@router.get("/stats", response_model=QueueStats, responses=SERVICE_ERRORS)
async def stats(runtime: RuntimeDep) -> Any:
    """Jobs by status and type, the oldest due job still waiting, leases the sweep will rescue."""
    rows = await runtime.store.rows("stats_by_status_and_type")
    [health] = await runtime.store.rows("stats_health")
    by_status: dict[str, int] = {}
    by_type: dict[str, dict[str, int]] = {}
    for row in rows:
        by_status[row["status"]] = by_status.get(row["status"], 0) + row["jobs"]
        by_type.setdefault(row["job_type"], {})[row["status"]] = row["jobs"]
    oldest = health["oldest_due_pending_seconds"] if health else None
    return {
        "by_status": by_status,
        "by_type": by_type,
        "oldest_due_pending_seconds": float(oldest) if oldest is not None else None,
        "expired_leases": health["expired_leases"] if health else 0,
    }


@router.post("/sweep", responses=SERVICE_ERRORS)
async def sweep(runtime: RuntimeDep) -> dict[str, Any]:
    """Run one pass of the sweep now (pg_cron runs it every minute anyway)."""
    [row] = await runtime.store.rows("sweep")
    summary: dict[str, Any] = row["summary"]
    return summary
