"""POST /webhooks/jobs: verify, parse, hand off, answer 202. Never runs a job inline."""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

import structlog
from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError

from functions.deps import ExecutorDep, RuntimeDep
from functions.errors import ApiError
from jobhook import metrics
from jobhook.doorbell import DispatchEvent, InvalidWebhook, events
from jobhook.runtime import Runtime

router = APIRouter(tags=["webhooks"])
# Inside the doorbell's timeout (jobhook.settings.dispatch_timeout_ms, 10 s by default).
WARM_UP_WAIT_SECONDS = 5.0
log = structlog.get_logger("jobhook.doorbell")


@router.post(
    "/webhooks/jobs",
    status_code=202,
    responses={
        401: {"description": "the signature did not verify"},
        413: {"description": "the body is over 1 MiB"},
        503: {"description": "the app is starting and cannot verify yet"},
    },
)
async def receive_jobs(request: Request, runtime: RuntimeDep, executor: ExecutorDep) -> Any:
    # Bodies over 1 MiB never get here: BodyLimitMiddleware answers 413 while they stream in.
    body = await request.body()
    if runtime.verifier is None:
        # pg_net never rings twice: a doorbell that arrives while the app starts waits for it,
        # within the doorbell's own timeout, rather than being turned away.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(WARM_UP_WAIT_SECONDS):
                await runtime.wait_ready()
    if runtime.verifier is None:
        _reject("not_ready", 503, "service_unavailable", runtime.not_ready or "starting")
    await _verify(runtime, body, request)
    try:
        event = events.validate_json(body)
    except ValidationError as exc:
        _reject(
            "bad_payload",
            400,
            "invalid_payload",
            "the body is not a jobhook event",
            exc.errors(include_url=False, include_input=False),
        )
    if not isinstance(event, DispatchEvent):
        metrics.webhook_deliveries.labels("ping").inc()
        return JSONResponse({"pong": True}, status_code=200)
    # The jobs' log lines name the delivery that rang for them (its webhook-id), beside the
    # request id; the executor carries both over to each job it runs.
    with structlog.contextvars.bound_contextvars(delivery_id=request.headers.get("webhook-id")):
        deferred = await executor.submit(event.jobs)
    metrics.webhook_deliveries.labels("accepted").inc()
    if deferred:
        log.warning(
            "executor full; jobs left pending, to be claimed when there is room",
            deferred=len(deferred),
        )
    return {"accepted": len(event.jobs) - len(deferred), "deferred": len(deferred)}


async def _verify(runtime: Runtime, body: bytes, request: Request) -> None:
    """Verify with the app's secrets and, should the signature match none, once more after
    following a rotation of the secret in Vault."""
    verifier = runtime.verifier
    assert verifier is not None
    try:
        verifier.verify(body, request.headers)
        return
    except InvalidWebhook as exc:
        failure = exc
    if failure.reason == "bad_signature" and await runtime.follow_rotation():
        try:
            runtime.verifier.verify(body, request.headers)  # type: ignore[union-attr]
            return
        except InvalidWebhook as exc:
            failure = exc
    _reject(failure.reason, 401, "invalid_signature", str(failure))


def _reject(reason: str, status: int, code: str, message: str, details: Any = None) -> None:
    metrics.webhook_deliveries.labels(f"rejected_{reason}").inc()
    log.warning("webhook rejected", reason=reason, detail=message)
    raise ApiError(status, code, message, details)
