"""The REST API's request and response shapes (also what /docs shows)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any, Self
from uuid import UUID

from pydantic import (
    AwareDatetime,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    field_validator,
    model_validator,
)

from jobhook.jobs import JobStatus

JOB_TYPE = r"^[a-z][a-z0-9_]{0,62}$"


class ErrorDetail(BaseModel):
    code: str = Field(examples=["invalid_job"])
    message: str = Field(examples=['unknown job type "resize_imgae"'])
    details: Any = None


class ErrorResponse(BaseModel):
    """Every 4xx and 5xx has this shape."""

    error: ErrorDetail
    request_id: str | None


class JobCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "not": {"required": ["job_parameters", "payload"]},
            "examples": [
                {"job_type": "sample_task", "job_parameters": {"steps": 5, "step_seconds": 0.2}},
                {
                    "job_type": "classify_document",
                    "payload": {"storage_path": "documents/<your user id>/invoice-2041.txt"},
                    "idempotency_key": "invoice-2041",
                },
            ],
        },
    )

    job_type: str = Field(pattern=JOB_TYPE, description="a registered job type")
    job_parameters: dict[str, JsonValue] | None = Field(
        None, description="the job's parameters (the name older clients use)"
    )
    payload: dict[str, JsonValue] | None = Field(None, description="the same, by its row name")
    run_at: AwareDatetime | None = Field(None, description="do not start before this time")
    idempotency_key: str | None = Field(
        None,
        min_length=1,
        max_length=255,
        description="a retried request with the same key returns the first job (200, not 201)",
    )

    @field_validator("run_at", mode="before")
    @classmethod
    def _timestamp_text(cls, value: Any) -> Any:
        # pydantic would read a number as seconds since 1970; the schema promises a date-time.
        if value is not None and not isinstance(value, str):
            raise ValueError("run_at must be an ISO 8601 date-time with a time zone")
        return value

    @field_validator("run_at")
    @classmethod
    def _plausible_time(cls, value: datetime | None) -> datetime | None:
        if value is None:
            return None
        try:
            in_utc = value.astimezone(UTC)
        except OverflowError:
            in_utc = None
        if in_utc is None or not 1970 <= in_utc.year <= 9999:
            raise ValueError("run_at must fall between the years 1970 and 9999")
        return in_utc

    @model_validator(mode="after")
    def _one_parameter_field(self) -> Self:
        if {"job_parameters", "payload"} <= self.model_fields_set:
            raise ValueError("send job_parameters or payload, not both")
        return self

    @model_validator(mode="after")
    def _storable_text(self) -> Self:
        # JSON may carry what PostgreSQL cannot store: lone surrogates (\ud800) and NUL (\u0000).
        text = json.dumps(self.model_dump(mode="json"), ensure_ascii=False)
        try:
            text.encode()
        except UnicodeEncodeError:
            raise ValueError(
                "the body holds text that is not valid Unicode (a lone surrogate)"
            ) from None
        if "\\u0000" in text:
            raise ValueError("the body holds a NUL character (\\u0000), which cannot be stored")
        return self

    @property
    def parameters(self) -> dict[str, Any]:
        return self.job_parameters if self.job_parameters is not None else (self.payload or {})


class ServiceJobCreate(JobCreate):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"not": {"required": ["job_parameters", "payload"]}}
    )

    user_id: UUID = Field(description="the user the job is enqueued for (RLS and quotas apply)")


class AttemptError(BaseModel):
    attempt: int
    at: datetime
    message: str
    kind: str


class Job(BaseModel):
    id: UUID
    user_id: UUID | None
    job_type: str
    payload: dict[str, Any]
    status: JobStatus
    progress: int = Field(ge=0, le=100)
    progress_message: str | None
    result: JsonValue
    error: str | None
    errors: list[AttemptError]
    attempt: int
    max_attempts: int
    run_at: datetime
    idempotency_key: str | None
    cancel_requested_at: datetime | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class JobFilters(BaseModel):
    """GET /jobs query parameters; an unknown one (a typo such as `staus`) is an error, not
    silently ignored."""

    model_config = ConfigDict(extra="forbid")

    status: JobStatus | None = Field(None, description="only jobs in this status")
    job_type: str | None = Field(None, pattern=JOB_TYPE, description="only jobs of this type")
    limit: int = Field(20, ge=1, le=100)
    offset: int = Field(0, ge=0, le=1_000_000)


class JobPage(BaseModel):
    jobs: list[Job]
    total: int = Field(description="jobs matching the filters")
    next_offset: int | None = Field(description="the offset of the next page, if there is one")


class QueueStats(BaseModel):
    by_status: dict[str, int]
    by_type: dict[str, dict[str, int]]
    oldest_due_pending_seconds: float | None
    expired_leases: int
