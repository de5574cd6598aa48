"""The job vocabulary shared by the runtime, the API and the CLI, mirroring public.jobs."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """public.job_status. Each value says who moves a job out of it."""

    PENDING = "pending"  # the runner's claim; the owner's cancel; the sweep (never picked up)
    PROCESSING = "processing"  # complete / fail (the runner); the sweep when the lease expires
    COMPLETED = "completed"  # final; pruned by the sweep after retention_days
    FAILED = "failed"  # final; pruned by the sweep after retention_days
    CANCELLED = "cancelled"  # final; pruned by the sweep after retention_days

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class JobError(Exception):
    """Raise from a handler to fail the attempt with this message; retried while attempts last."""

    retryable = True
    kind = "error"


class PermanentJobError(JobError):
    """Raise from a handler to fail the job at once: retrying cannot help (bad input, 4xx...)."""

    retryable = False
