"""The jobs list's filter, parsed at the boundary from the page's query string."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Literal
from urllib.parse import urlencode
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, field_validator

from jobhook.jobs import JobStatus

PAGE_SIZE = 50
# The range a list shows unless the operator picks another.
DEFAULT_RANGE = timedelta(hours=24)
LAST_ID = UUID("ffffffff-ffff-ffff-ffff-ffffffffffff")
FIRST_ID = UUID(int=0)
FAR_PAST = datetime(1970, 1, 1, tzinfo=UTC)
FAR_FUTURE = datetime(9999, 1, 1, tzinfo=UTC)


class JobFilter(BaseModel):
    model_config = ConfigDict(frozen=True, extra="ignore")

    status: JobStatus | None = None
    job_type: str | None = Field(None, max_length=63)
    user_id: UUID | None = None
    since: datetime | None = None
    until: datetime | None = None
    error: str | None = Field(None, max_length=200)
    order: Literal["newest", "oldest"] = "newest"
    # The keyset: the last row of the page before.
    after_at: datetime | None = None
    after_id: UUID | None = None

    @field_validator("*", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        if isinstance(value, str) and not value.strip():
            return None
        return value.strip() if isinstance(value, str) else value

    @field_validator("since", "until", "after_at")
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        # <input type="datetime-local"> sends no zone: the dashboard shows UTC throughout.
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value

    def range(self, now: datetime) -> tuple[datetime, datetime]:
        until = self.until or now + timedelta(minutes=1)
        return self.since or until - DEFAULT_RANGE, until

    def params(self, now: datetime, limit: int = PAGE_SIZE) -> dict[str, Any]:
        since, until = self.range(now)
        newest = self.order == "newest"
        at = self.after_at or (FAR_FUTURE if newest else FAR_PAST)
        last = self.after_id or (LAST_ID if newest else FIRST_ID)
        return {
            "status": self.status.value if self.status else None,
            "job_type": self.job_type,
            "user_id": self.user_id,
            "since": since,
            "until": until,
            "error": self.error,
            "newest": newest,
            "after_at": at,
            "after_id": last,
            "limit": limit,
        }

    def query(self, **changes: Any) -> str:
        """This filter as a query string, with `changes` (None drops a field)."""
        fields = self.model_dump(mode="json") | changes
        return urlencode({k: v for k, v in fields.items() if v is not None})

    def next_page(self, last: dict[str, Any]) -> str:
        return self.query(after_at=last["created_at"].isoformat(), after_id=str(last["id"]))

    def without_cursor(self) -> JobFilter:
        return self.model_copy(update={"after_at": None, "after_id": None})
