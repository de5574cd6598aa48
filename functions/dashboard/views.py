"""The dashboard's pages, the fragments they refresh, and the operators' actions.

Each page is rendered on the server from one or two named queries (jobhook/sql/dashboard.sql,
jobhook/sql/health.sql) and names, in `data-refresh`, the fragment that dashboard.js fetches
again every few seconds while the tab is visible: the page updates without a reload, at the cost
of those queries per refresh (docs/design.md counts them).
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import structlog
from fastapi import APIRouter, Depends, Form, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from functions.auth import Authenticator, get_authenticator
from functions.dashboard import charts
from functions.dashboard.filters import JobFilter
from functions.dashboard.session import (
    CurrentOperator,
    Operator,
    SessionsDep,
    SignInRefused,
    csrf_holds,
    same_origin,
)
from functions.deps import RuntimeDep
from functions.health import app_health
from jobhook.jobs import ClientError, JobStatus
from jobhook.runtime import Runtime
from jobhook.store import Store

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")
templates.env.globals["charts"] = charts
templates.env.filters["pretty"] = lambda value: json.dumps(value, indent=2, default=str)
NOTICE = "jobhook_notice"
STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
# The most jobs one bulk action touches (jobhook.retry and cancel_for_operator take 1000).
BULK_LIMIT = 1000
RETRYABLE = (JobStatus.FAILED, JobStatus.CANCELLED)
CANCELLABLE = (JobStatus.PENDING, JobStatus.PROCESSING)

log = structlog.get_logger("jobhook.dashboard")
router = APIRouter(prefix="/dashboard", include_in_schema=False)


async def job_filter(request: Request) -> JobFilter:
    return JobFilter.model_validate(dict(request.query_params))


Filter = Annotated[JobFilter, Depends(job_filter)]
AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]


# The page runs its own script and styles only, and no other site may frame it.
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
        "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}


def reads(runtime: Runtime) -> Store:
    """The dashboard's queries go through the API's pool: an open page polling cannot take
    the connections the runner claims and heartbeats with."""
    return Store(runtime.api_pool, runtime.store.limits)


def page(request: Request, name: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    notice = request.cookies.get(NOTICE) if "fragments" not in request.url.path else None
    response = templates.TemplateResponse(
        request, name, {"notice": notice, **context}, status_code=status_code
    )
    response.headers.update(HEADERS)
    if notice is not None:
        response.delete_cookie(NOTICE, path="/dashboard")
    return response


def after_action(location: str, notice: str) -> Response:
    """Back to a page that says what the action did. The message travels in a short-lived
    cookie, not the URL, so no link from elsewhere can make the dashboard say anything."""
    response = RedirectResponse(location, status_code=303)
    response.set_cookie(
        NOTICE, notice[:300], max_age=60, path="/dashboard", httponly=True, samesite="strict"
    )
    return response


@router.get("/static/{name}")
async def static(name: str) -> Response:
    media_type = STATIC.get(name)
    if media_type is None:
        return Response(status_code=404)
    headers = {"Cache-Control": "public, max-age=300", "X-Content-Type-Options": "nosniff"}
    return Response((HERE / "static" / name).read_bytes(), media_type=media_type, headers=headers)


@router.get("/login")
async def login_form(request: Request) -> HTMLResponse:
    return page(request, "login.html", error=None)


@router.post("/login")
async def login(
    request: Request,
    sessions: SessionsDep,
    authenticator: AuthenticatorDep,
    credential: Annotated[str, Form(max_length=16_384)] = "",
) -> Response:
    if not same_origin(request):
        return page(request, "login.html", status_code=403, error="sign in from this page")
    try:
        operator = await sessions.sign_in(credential, authenticator)
    except SignInRefused as exc:
        log.warning("dashboard sign-in refused", reason=str(exc))
        return page(request, "login.html", status_code=401, error=str(exc))
    log.info("dashboard sign-in", actor=operator.actor)
    response = RedirectResponse("/dashboard", status_code=303)
    sessions.set_cookie(response, request, operator)
    return response


@router.post("/logout")
async def logout(
    request: Request,
    operator: CurrentOperator,
    sessions: SessionsDep,
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    refuse_forgery(request, operator, csrf)
    response = RedirectResponse("/dashboard/login", status_code=303)
    sessions.clear_cookie(response, request)
    return response


def refuse_forgery(request: Request, operator: Operator, csrf: str | None) -> None:
    if not csrf_holds(request, operator, csrf):
        log.warning("dashboard action refused: CSRF", actor=operator.actor, path=request.url.path)
        raise Forged()


class Forged(ClientError):
    """An action without this session's CSRF token, or from another origin."""

    status = 403
    code = "forged_request"


# -- overview -----------------------------------------------------------------------------------


@router.get("")
async def overview(request: Request, operator: CurrentOperator, runtime: RuntimeDep) -> Response:
    return page(request, "overview.html", operator=operator, **await _overview(runtime))


@router.get("/fragments/overview")
async def overview_fragment(
    request: Request, operator: CurrentOperator, runtime: RuntimeDep
) -> Response:
    return page(request, "_overview.html", operator=operator, **await _overview(runtime))


async def _overview(runtime: Runtime) -> dict[str, Any]:
    [row] = await reads(runtime).fetch("dashboard_overview", {})
    statuses = [s.value for s in JobStatus]
    table: dict[str, dict[str, int]] = {}
    for count in row["counts"]:
        table.setdefault(count["job_type"], dict.fromkeys(statuses, 0))[count["status"]] = count[
            "jobs"
        ]
    return {"o": row, "by_type": dict(sorted(table.items())), "statuses": statuses}


# -- jobs -----------------------------------------------------------------------------------------


@router.get("/jobs")
async def jobs(
    request: Request, operator: CurrentOperator, runtime: RuntimeDep, chosen: Filter
) -> Response:
    types = [row["name"] for row in await reads(runtime).fetch("dashboard_job_types", {})]
    listed = await _jobs(runtime, chosen)
    return page(request, "jobs.html", operator=operator, job_types=types, **listed)


@router.get("/fragments/jobs")
async def jobs_fragment(
    request: Request, operator: CurrentOperator, runtime: RuntimeDep, chosen: Filter
) -> Response:
    # The list alone: one round trip per refresh (the filter form is not refreshed).
    return page(request, "_jobs.html", operator=operator, **await _jobs(runtime, chosen))


async def _jobs(runtime: Runtime, chosen: JobFilter) -> dict[str, Any]:
    now = datetime.now(UTC)
    rows = await reads(runtime).fetch("dashboard_jobs", chosen.params(now))
    since, until = chosen.range(now)
    return {
        "f": chosen,
        "rows": rows,
        "statuses": [s.value for s in JobStatus],
        "since": since,
        "until": until,
        "next_page": chosen.next_page(rows[-1])
        if len(rows) == chosen.params(now)["limit"]
        else None,
    }


@router.get("/jobs/{job_id}")
async def job(
    request: Request, job_id: UUID, operator: CurrentOperator, runtime: RuntimeDep
) -> Response:
    found = await _job(runtime, job_id)
    if found is None:
        return page(request, "missing.html", status_code=404, operator=operator, job_id=job_id)
    return page(request, "job.html", operator=operator, j=found)


@router.get("/fragments/jobs/{job_id}")
async def job_fragment(
    request: Request, job_id: UUID, operator: CurrentOperator, runtime: RuntimeDep
) -> Response:
    found = await _job(runtime, job_id)
    if found is None:
        return Response(status_code=404)
    return page(request, "_job.html", operator=operator, j=found)


async def _job(runtime: Runtime, job_id: UUID) -> dict[str, Any] | None:
    rows = await reads(runtime).fetch("dashboard_job", {"id": job_id})
    return rows[0] if rows else None


# -- actions --------------------------------------------------------------------------------------


@router.post("/jobs/{job_id}/{action}")
async def act_on_job(
    request: Request,
    job_id: UUID,
    action: str,
    operator: CurrentOperator,
    runtime: RuntimeDep,
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    refuse_forgery(request, operator, csrf)
    if action not in ("retry", "cancel"):
        return Response(status_code=404)
    done = await _act(runtime, operator, action, [job_id])
    notice = f"{action}: {'done' if done else 'nothing to do (the job is not in a state for it)'}"
    return after_action(f"/dashboard/jobs/{job_id}", notice)


@router.get("/bulk")
async def bulk_confirm(
    request: Request,
    operator: CurrentOperator,
    runtime: RuntimeDep,
    chosen: Filter,
    action: Annotated[str, Query(pattern="^(retry|cancel)$")],
) -> Response:
    """What a bulk action would touch, to confirm: nothing changes until the form is sent."""
    ids, problem = await _selection(runtime, chosen, action)
    return page(
        request,
        "confirm.html",
        operator=operator,
        f=chosen,
        action=action,
        count=len(ids),
        limit=BULK_LIMIT,
        problem=problem,
    )


@router.post("/bulk")
async def bulk(
    request: Request,
    operator: CurrentOperator,
    runtime: RuntimeDep,
    chosen: Filter,
    action: Annotated[str, Form(pattern="^(retry|cancel)$")],
    csrf: Annotated[str | None, Form()] = None,
) -> Response:
    refuse_forgery(request, operator, csrf)
    ids, problem = await _selection(runtime, chosen, action)
    if problem is not None:
        return after_action(f"/dashboard/jobs?{chosen.query()}", problem)
    done = await _act(runtime, operator, action, ids)
    notice = f"{action}: {done} of {len(ids)} job(s)"
    return after_action(f"/dashboard/jobs?{chosen.without_cursor().query()}", notice)


async def _selection(
    runtime: Runtime, chosen: JobFilter, action: str
) -> tuple[list[UUID], str | None]:
    allowed = RETRYABLE if action == "retry" else CANCELLABLE
    if chosen.status not in allowed:
        names = " or ".join(s.value for s in allowed)
        return [], f"{action} by filter needs the status filter set to {names}"
    newest = chosen.without_cursor().model_copy(update={"order": "newest"})
    params = newest.params(datetime.now(UTC), limit=BULK_LIMIT)
    rows = await reads(runtime).fetch("dashboard_selection", params)
    return [row["id"] for row in rows], None


async def _act(runtime: Runtime, operator: Operator, action: str, ids: list[UUID]) -> int:
    name = "dashboard_retry" if action == "retry" else "dashboard_cancel"
    rows = await reads(runtime).fetch(name, {"ids": ids, "actor": operator.actor})
    log.info(
        "dashboard action",
        actor=operator.actor,
        action=action,
        asked=len(ids),
        done=len(rows),
        job_ids=[str(row["id"]) for row in rows[:20]],
    )
    return len(rows)


# -- health ---------------------------------------------------------------------------------------


@router.get("/health")
async def health(
    request: Request, operator: CurrentOperator, runtime: RuntimeDep, auth: AuthenticatorDep
) -> Response:
    return page(request, "health.html", operator=operator, **await _health(runtime, auth))


@router.get("/fragments/health")
async def health_fragment(
    request: Request, operator: CurrentOperator, runtime: RuntimeDep, auth: AuthenticatorDep
) -> Response:
    return page(request, "_health.html", operator=operator, **await _health(runtime, auth))


async def _health(runtime: Runtime, authenticator: Authenticator) -> dict[str, Any]:
    report = await app_health(runtime, authenticator)
    sweeps: list[dict[str, Any]] = []
    replies: list[dict[str, Any]] = []
    if report.facts:
        sweeps = await reads(runtime).fetch("dashboard_sweeps", {})
        replies = await reads(runtime).fetch("dashboard_recent_replies", {})
    return {"report": report, "sweeps": sweeps, "replies": replies}
