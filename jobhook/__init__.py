"""jobhook: background jobs as Postgres rows on Supabase, run on Modal."""

from jobhook.context import JobCancelled, JobContext
from jobhook.jobs import JobError, JobStatus, PermanentJobError
from jobhook.registry import job, registry

__all__ = [
    "JobCancelled",
    "JobContext",
    "JobError",
    "JobStatus",
    "PermanentJobError",
    "job",
    "registry",
]
