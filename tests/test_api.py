"""The /jobs REST API over real HTTP: everything the older backends offered, RLS deciding."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import httpx
import psycopg
import pytest

from jobhook.devstack.stack import Served
from tests.conftest import DEMO_USER, AppFactory, Stack, finished, user_token, wait_for_job

pytestmark = pytest.mark.commits
OTHER_USER = "00000000-0000-4000-8000-0000000000b0"


def as_user(user_id: str = DEMO_USER) -> dict[str, str]:
    return {"Authorization": f"Bearer {user_token(user_id)}"}


@pytest.fixture
def other_user(committed: Stack) -> str:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute(
            "insert into auth.users (id, email) values (%s, 'b@example.com')"
            " on conflict do nothing",
            (OTHER_USER,),
        )
    return OTHER_USER


@pytest.fixture
async def http(app_stack: Served) -> Any:
    async with httpx.AsyncClient(base_url=app_stack.url, headers=as_user()) as client:
        yield client


def assert_error(reply: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert reply.status_code == status, reply.text
    body: dict[str, Any] = reply.json()
    assert set(body) == {"error", "request_id"}
    assert set(body["error"]) == {"code", "message", "details"}
    assert body["error"]["code"] == code
    assert body["request_id"] == reply.headers["x-request-id"]
    return body


async def test_create_with_job_parameters_and_follow_it_to_the_result(
    http: httpx.AsyncClient, committed: Stack
) -> None:
    reply = await http.post(
        "/jobs",
        json={
            "job_type": "sample_task",
            "job_parameters": {"steps": 2, "step_seconds": 0, "result": 7},
        },
    )
    assert reply.status_code == 201, reply.text
    job = reply.json()
    assert reply.headers["location"] == f"/jobs/{job['id']}"
    assert (job["status"], job["payload"], job["user_id"]) == (
        "pending",
        {"steps": 2, "step_seconds": 0, "result": 7},
        DEMO_USER,
    )
    await wait_for_job(committed.url, uuid.UUID(job["id"]), finished)
    done = (await http.get(f"/jobs/{job['id']}")).json()
    assert (done["status"], done["progress"], done["result"]) == (
        "completed",
        100,
        {"steps": 2, "attempt": 1, "result": 7},
    )


async def test_payload_is_accepted_too_but_not_both(http: httpx.AsyncClient) -> None:
    reply = await http.post("/jobs", json={"job_type": "sample_task", "payload": {"steps": 1}})
    assert reply.status_code == 201
    both = await http.post(
        "/jobs", json={"job_type": "sample_task", "payload": {}, "job_parameters": {}}
    )
    body = assert_error(both, 422, "invalid_request")
    assert "send job_parameters or payload, not both" in body["error"]["message"]


async def test_an_idempotent_retry_returns_the_same_job(http: httpx.AsyncClient) -> None:
    request = {"job_type": "sample_task", "idempotency_key": "order-42"}
    first = await http.post("/jobs", json=request)
    second = await http.post("/jobs", json=request)
    assert (first.status_code, second.status_code) == (201, 200)
    assert first.json()["id"] == second.json()["id"]


async def test_refusals_name_the_problem(http: httpx.AsyncClient) -> None:
    unknown = assert_error(
        await http.post("/jobs", json={"job_type": "resize_imgae"}), 422, "invalid_job"
    )
    assert unknown["error"]["message"] == 'unknown job type "resize_imgae"'
    assert "sample_task" in unknown["error"]["details"]["hint"]

    big = await http.post(
        "/jobs", json={"job_type": "sample_task", "payload": {"result": "x" * 70_000}}
    )
    assert (
        "payload is 70014 bytes, over the limit of 65536 bytes"
        in assert_error(big, 422, "invalid_job")["error"]["message"]
    )

    not_json = await http.post(
        "/jobs", content=b'{"job_type": ', headers={"content-type": "application/json"}
    )
    assert_error(not_json, 400, "malformed_json")

    huge = await http.post("/jobs", content=b"x" * (1024 * 1024 + 10))
    assert_error(huge, 413, "payload_too_large")

    extra = await http.post("/jobs", json={"job_type": "sample_task", "status": "completed"})
    assert "status" in assert_error(extra, 422, "invalid_request")["error"]["message"]

    bad_type = await http.post("/jobs", json={"job_type": "Robert'); drop table jobs;--"})
    assert_error(bad_type, 422, "invalid_request")


async def test_a_token_for_a_user_that_no_longer_exists_is_refused(app_stack: Served) -> None:
    ghost = str(uuid.uuid4())
    async with httpx.AsyncClient(base_url=app_stack.url, headers=as_user(ghost)) as client:
        reply = await client.post("/jobs", json={"job_type": "sample_task"})
    body = assert_error(reply, 401, "unauthorized")
    assert body["error"]["details"] == {"reason": "unknown_user"}


async def test_list_filters_and_pages_newest_first(http: httpx.AsyncClient) -> None:
    ids = [(await http.post("/jobs", json={"job_type": "refuses"})).json()["id"] for _ in range(3)]
    first = (await http.get("/jobs", params={"job_type": "refuses", "limit": 2})).json()
    assert [job["id"] for job in first["jobs"]] == ids[::-1][:2]
    assert (first["total"], first["next_offset"]) == (3, 2)
    rest = (await http.get("/jobs", params={"job_type": "refuses", "limit": 2, "offset": 2})).json()
    assert [job["id"] for job in rest["jobs"]] == [ids[0]]
    assert rest["next_offset"] is None
    assert rest["total"] == 3
    for offset in (3, 4, 1000):
        past = (
            await http.get("/jobs", params={"job_type": "refuses", "limit": 2, "offset": offset})
        ).json()
        assert past == {"jobs": [], "total": 3, "next_offset": None}, offset
    none = (await http.get("/jobs", params={"job_type": "no_such_type", "offset": 5})).json()
    assert none == {"jobs": [], "total": 0, "next_offset": None}
    assert_error(await http.get("/jobs", params={"limit": 101}), 422, "invalid_request")
    assert_error(await http.get("/jobs", params={"status": "lost"}), 422, "invalid_request")


async def test_cancel(http: httpx.AsyncClient) -> None:
    job = (
        await http.post("/jobs", json={"job_type": "sample_task", "run_at": "2999-01-01T00:00:00Z"})
    ).json()
    cancelled = await http.post(f"/jobs/{job['id']}/cancel")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"
    again = assert_error(await http.post(f"/jobs/{job['id']}/cancel"), 409, "cannot_cancel")
    assert "is cancelled" in again["error"]["message"]


async def test_another_user_can_neither_see_cancel_nor_detect_your_jobs(
    http: httpx.AsyncClient, app_stack: Served, other_user: str
) -> None:
    mine = (await http.post("/jobs", json={"job_type": "sample_task"})).json()["id"]
    async with httpx.AsyncClient(base_url=app_stack.url, headers=as_user(other_user)) as theirs:
        missing = str(uuid.uuid4())
        for job_id in (mine, missing):
            # The same answer for "not yours" and "does not exist": nothing to detect.
            assert_error(await theirs.get(f"/jobs/{job_id}"), 404, "not_found")
            assert_error(await theirs.post(f"/jobs/{job_id}/cancel"), 404, "not_found")
        listed = (await theirs.get("/jobs")).json()
        assert mine not in [job["id"] for job in listed["jobs"]]
    assert (await http.get(f"/jobs/{mine}")).json()["cancel_requested_at"] is None


async def test_the_per_user_rate_limit_answers_429_with_retry_after(
    api_server: AppFactory,
) -> None:
    served = await api_server(JOBHOOK_RATE_LIMIT="3/minute")
    async with httpx.AsyncClient(base_url=served.url, headers=as_user()) as client:
        replies = [await client.post("/jobs", json={"job_type": "refuses"}) for _ in range(4)]
    assert [r.status_code for r in replies] == [201, 201, 201, 429]
    body = assert_error(replies[3], 429, "rate_limited")
    assert 1 <= int(replies[3].headers["retry-after"]) <= 60
    assert body["error"]["details"]["limit"] == "3 per 1 minute"


async def test_the_unfinished_jobs_quota_is_a_429(
    http: httpx.AsyncClient, committed: Stack
) -> None:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute("update jobhook.settings set max_unfinished_per_user = 1")
    future = {"job_type": "sample_task", "run_at": "2999-01-01T00:00:00Z"}
    assert (await http.post("/jobs", json=future)).status_code == 201
    refused = assert_error(await http.post("/jobs", json=future), 429, "too_many_unfinished_jobs")
    assert "the limit is 1" in refused["error"]["message"]


async def test_request_ids_are_echoed_or_made(app_stack: Served) -> None:
    async with httpx.AsyncClient(base_url=app_stack.url) as client:
        given = await client.get("/health", headers={"X-Request-ID": "trace-abc.123"})
        made = await client.get("/health")
        # Too long and not plain: replaced, so a client cannot forge log lines.
        forged = await client.get("/health", headers={"X-Request-ID": "a b=c;" * 40})
    assert given.headers["x-request-id"] == "trace-abc.123"
    assert len(made.headers["x-request-id"]) == 32
    assert len(forged.headers["x-request-id"]) == 32


async def test_the_request_id_reaches_the_logs_and_the_job_id_the_runner_logs(
    api_server: AppFactory, committed: Stack, json_logs: Callable[[], list[dict[str, Any]]]
) -> None:
    served = await api_server()
    async with httpx.AsyncClient(base_url=served.url, headers=as_user()) as client:
        reply = await client.post(
            "/jobs",
            json={"job_type": "sample_task", "payload": {"steps": 1, "step_seconds": 0}},
            headers={"X-Request-ID": "req-from-client"},
        )
        job_id = reply.json()["id"]
        await wait_for_job(committed.url, uuid.UUID(job_id), finished)
    lines = json_logs()
    assert any(
        line.get("request_id") == "req-from-client" and line["event"] == "request" for line in lines
    )
    runner_lines = [line for line in lines if line.get("job_id") == job_id]
    assert runner_lines
    assert runner_lines[-1]["event"] == "attempt finished"


async def test_cors_answers_allowed_origins_only(api_server: AppFactory) -> None:
    served = await api_server(JOBHOOK_CORS_ORIGINS="https://app.example.com")
    async with httpx.AsyncClient(base_url=served.url) as client:
        preflight = {
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization",
        }
        allowed = await client.options(
            "/jobs", headers={"Origin": "https://app.example.com", **preflight}
        )
        denied = await client.options(
            "/jobs", headers={"Origin": "https://evil.example", **preflight}
        )
    assert allowed.headers["access-control-allow-origin"] == "https://app.example.com"
    assert "access-control-allow-origin" not in denied.headers


async def test_metrics_and_docs(http: httpx.AsyncClient) -> None:
    await http.get("/jobs")
    metrics = (await http.get("/metrics")).text
    assert 'jobhook_http_requests_total{method="GET",route="/jobs",status="200"}' in metrics
    assert "jobhook_job_start_latency_seconds_bucket" in metrics
    assert (await http.get("/docs")).status_code == 200
    schema = (await http.get("/openapi.json")).json()
    create = schema["paths"]["/jobs"]["post"]
    assert create["responses"]["422"]["content"]["application/json"]["schema"]["$ref"].endswith(
        "ErrorResponse"
    )
    assert schema["components"]["schemas"]["JobCreate"]["examples"]


async def test_service_endpoints_need_the_api_key(api_server: AppFactory, committed: Stack) -> None:
    key = "k" * 40
    served = await api_server(JOBHOOK_API_KEY=key)
    async with httpx.AsyncClient(base_url=served.url) as client:
        body = {"user_id": DEMO_USER, "job_type": "sample_task", "payload": {"steps": 1}}
        assert_error(await client.post("/service/jobs", json=body), 401, "unauthorized")
        wrong = {"X-API-Key": "k" * 39 + "j"}
        assert_error(
            await client.post("/service/jobs", json=body, headers=wrong), 401, "unauthorized"
        )
        # A user's token is not a service key.
        assert_error(await client.get("/service/stats", headers=as_user()), 401, "unauthorized")
        ghost = {**body, "user_id": str(uuid.uuid4())}
        missing = await client.post("/service/jobs", json=ghost, headers={"X-API-Key": key})
        assert_error(missing, 404, "unknown_user")
        created = await client.post("/service/jobs", json=body, headers={"X-API-Key": key})
        assert created.status_code == 201
        assert created.json()["user_id"] == DEMO_USER
        stats = (await client.get("/service/stats", headers={"X-API-Key": key})).json()
        assert sum(stats["by_status"].values()) >= 1
        swept = (await client.post("/service/sweep", headers={"X-API-Key": key})).json()
        assert "rescued" in swept


async def test_service_endpoints_are_off_without_a_key(http: httpx.AsyncClient) -> None:
    assert_error(
        await http.get("/service/stats", headers={"X-API-Key": "anything"}),
        403,
        "service_api_disabled",
    )


@pytest.mark.parametrize(
    ("method", "path", "allowed"),
    [
        ("DELETE", "/jobs", "GET, POST"),
        ("PUT", "/jobs/00000000-0000-4000-8000-00000000d3e0", "GET"),
        ("DELETE", "/jobs/00000000-0000-4000-8000-00000000d3e0", "GET"),
        ("PATCH", "/jobs/not-even-a-uuid", "GET"),
        ("GET", "/jobs/00000000-0000-4000-8000-00000000d3e0/cancel", "POST"),
        ("GET", "/webhooks/jobs", "POST"),
        ("POST", "/health", "GET"),
        ("POST", "/ready", "GET"),
        ("GET", "/service/jobs", "POST"),
        ("POST", "/metrics", "GET"),
    ],
)
async def test_a_405_names_the_methods_the_path_allows(
    app_stack: Served, method: str, path: str, allowed: str
) -> None:
    async with httpx.AsyncClient(base_url=app_stack.url, headers=as_user()) as client:
        reply = await client.request(method, path)
    body = assert_error(reply, 405, "method_not_allowed")
    assert reply.headers["allow"] == allowed
    assert allowed.replace(", ", " or ") in body["error"]["message"]


@pytest.mark.parametrize("path", ["/jobs", "/webhooks/jobs", "/service/jobs"])
async def test_a_streamed_body_over_the_limit_is_a_413(app_stack: Served, path: str) -> None:
    async def chunks() -> Any:
        # Valid JSON so far, never closed: only its size is wrong.
        yield b'{"job_type": "sample_task", "job_parameters": {"padding": "'
        for _ in range(20):
            yield b"x" * 65_536

    async with httpx.AsyncClient(base_url=app_stack.url, headers=as_user()) as client:
        reply = await client.post(path, content=chunks(), headers={"X-API-Key": "k" * 40})
    assert "content-length" not in reply.request.headers
    assert reply.request.headers["transfer-encoding"] == "chunked"
    body = assert_error(reply, 413, "payload_too_large")
    assert "1048576 bytes" in body["error"]["message"]
