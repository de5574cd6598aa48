"""Prometheus metrics, served at /metrics. Labels are bounded: job types, outcomes, reasons."""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

from prometheus_client import Counter, Histogram

LATENCY_BUCKETS = (0.001, 0.002, 0.004, 0.006, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10)
DURATION_BUCKETS = (0.01, 0.05, 0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 900, 3600)

jobs_started = Counter("jobhook_jobs_started", "Attempts claimed and started", ["job_type"])
jobs_finished = Counter(
    "jobhook_jobs_finished",
    "Attempts finished, by outcome (completed, retry, failed, cancelled, lost)",
    ["job_type", "outcome"],
)
start_latency = Histogram(
    "jobhook_job_start_latency_seconds",
    "From the moment a job was due (inserted, or its run_at) to its claim",
    ["job_type"],
    buckets=LATENCY_BUCKETS,
)
run_duration = Histogram(
    "jobhook_job_run_duration_seconds",
    "Handler run time per attempt",
    ["job_type"],
    buckets=DURATION_BUCKETS,
)
webhook_deliveries = Counter(
    "jobhook_webhook_deliveries",
    "Webhook deliveries, accepted or rejected by reason",
    ["result"],
)
jobs_deferred = Counter(
    "jobhook_jobs_deferred",
    "Dispatched jobs turned away by a full executor line (claimed back once there is room)",
    ["job_type"],
)
http_requests = Counter(
    "jobhook_http_requests",
    "HTTP requests by route template and status",
    ["method", "route", "status"],
)
http_duration = Histogram(
    "jobhook_http_request_duration_seconds",
    "HTTP request handling time by route template",
    ["method", "route"],
    buckets=LATENCY_BUCKETS,
)


@dataclass(frozen=True)
class JobTypeMetrics:
    """The children of the per-type metrics, resolved once per job type rather than per job."""

    started: Any
    latency: Any
    duration: Any
    finished: dict[str, Any]


@cache
def for_job_type(job_type: str) -> JobTypeMetrics:
    return JobTypeMetrics(
        started=jobs_started.labels(job_type),
        latency=start_latency.labels(job_type),
        duration=run_duration.labels(job_type),
        finished={},
    )


def finished(job_type: str, outcome: str) -> Any:
    children = for_job_type(job_type).finished
    if outcome not in children:
        children[outcome] = jobs_finished.labels(job_type, outcome)
    return children[outcome]
