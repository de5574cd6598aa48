"""/jobs: create, list, read and cancel your jobs over HTTP, as the older backends offered.

Every query runs as the caller (role `authenticated` and their claims, in the request's
transaction), so row-level security alone decides what they see: another user's job is simply
not found, whether it exists or not.
"""

from __future__ import annotations

from typing import Annotated, Any
from uuid import UUID

from fastapi import APIRouter, Depends, Query, Request, Response

from functions.auth import CurrentCaller, unauthorized
from functions.deps import RuntimeDep
from functions.errors import ApiError
from functions.schemas import ErrorResponse, Job, JobCreate, JobFilters, JobPage
from jobhook.client import Caller, EnqueueRefused, JobsClient
from jobhook.registry import InvalidParameters, Registry

router = APIRouter(prefix="/jobs", tags=["jobs"])

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorResponse, "description": description}
    for status, description in {
        400: "the body is not valid JSON",
        401: "no valid Supabase access token",
        413: "the body is over 1 MiB",
        422: "the request does not match the schema",
        503: "the database is unreachable, or the app cannot verify tokens (auth_not_configured)",
    }.items()
}


async def jobs_client(runtime: RuntimeDep) -> JobsClient:
    return JobsClient(runtime.api_pool, runtime.settings.limits)


ClientDep = Annotated[JobsClient, Depends(jobs_client)]


async def rate_limited(request: Request, caller: CurrentCaller) -> None:
    await request.app.state.rate_limiter.check(str(caller.claims["sub"]))


@router.post(
    "",
    status_code=201,
    response_model=Job,
    dependencies=[Depends(rate_limited)],
    responses={
        **ERRORS,
        200: {"model": Job, "description": "the job created earlier with this idempotency key"},
        409: {"model": ErrorResponse, "description": "the idempotency key is taken"},
        422: {"model": ErrorResponse, "description": "invalid request, or the job is refused"},
        429: {"model": ErrorResponse, "description": "rate limited, or too many unfinished jobs"},
    },
)
async def create_job(
    body: JobCreate,
    caller: CurrentCaller,
    client: ClientDep,
    runtime: RuntimeDep,
    response: Response,
) -> Any:
    """Enqueue a job. The row is inserted as you, exactly as supabase-js would insert it.

    The parameters are checked against the job type's model first (422 `invalid_parameters`,
    naming each field), then by the database against the stored schema, as for any insert."""
    return await enqueue(
        client,
        caller,
        body,
        response,
        job_types=runtime.registry,
        unknown_user=unauthorized("unknown_user", "the token's user no longer exists"),
    )


REFUSALS = {"too_many_unfinished_jobs": 429, "idempotency_conflict": 409}


async def enqueue(
    client: JobsClient,
    caller: Caller,
    body: JobCreate,
    response: Response,
    *,
    job_types: Registry,
    unknown_user: ApiError,
) -> Any:
    """Insert the job as `caller`; 201 for a new job, 200 for the one an idempotency key names."""
    job_type = job_types.get(body.job_type)
    # A type this deployment does not run may still be another's: the database decides.
    if job_type is not None:
        try:
            job_type.parse(body.parameters)
        except InvalidParameters as exc:
            raise ApiError(422, "invalid_parameters", str(exc), exc.problems) from None
    try:
        row, created = await client.enqueue(
            caller,
            body.job_type,
            body.parameters,
            run_at=body.run_at,
            idempotency_key=body.idempotency_key,
        )
    except EnqueueRefused as exc:
        if exc.code == "unknown_user":
            raise unknown_user from None
        details: Any = {"hint": exc.hint} if exc.hint else None
        if exc.problems is not None:
            details = exc.problems
        raise ApiError(REFUSALS.get(exc.code, 422), exc.code, str(exc), details) from None
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/jobs/{row['id']}"
    return row


@router.get("", response_model=JobPage, responses=ERRORS)
async def list_jobs(
    request: Request,
    caller: CurrentCaller,
    client: ClientDep,
    filters: Annotated[JobFilters, Query()],
) -> Any:
    """Your jobs, newest first."""
    repeated = sorted(
        {key for key in request.query_params if len(request.query_params.getlist(key)) > 1}
    )
    if repeated:
        raise ApiError(422, "invalid_request", f"give each filter once: {', '.join(repeated)}")
    page = await client.list(
        caller,
        status=filters.status,
        job_type=filters.job_type,
        limit=filters.limit,
        offset=filters.offset,
    )
    following = filters.offset + len(page.jobs)
    return {
        "jobs": page.jobs,
        "total": page.total,
        "next_offset": following if following < page.total else None,
    }


NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorResponse, "description": "no such job among yours"}
}


@router.get("/{job_id}", response_model=Job, responses={**ERRORS, **NOT_FOUND})
async def get_job(job_id: UUID, caller: CurrentCaller, client: ClientDep) -> Any:
    """One of your jobs: status, progress, result and the error of every failed attempt."""
    return await client.get(caller, job_id)  # JobNotFound answers 404 (functions.errors)


@router.post(
    "/{job_id}/cancel",
    response_model=Job,
    responses={
        **ERRORS,
        **NOT_FOUND,
        409: {"model": ErrorResponse, "description": "the job is finished or already cancelling"},
    },
)
async def cancel_job(job_id: UUID, caller: CurrentCaller, client: ClientDep) -> Any:
    """Cancel a job: a pending one at once, a running one when its runner next checks in."""
    # JobNotFound answers 404, CannotCancel 409 (functions.errors).
    return await client.cancel(caller, job_id)
