"""The job vocabulary shared by the runtime, the API and the CLI, mirroring public.jobs, and the
three error families, one per audience:

- `JobError`: what handler authors raise; its message is the job's `error`, read by the owner.
- `ClientError`: what an API client (the REST API, a JobsClient caller, the CLI) is answered with
  when its request cannot be served as asked; `status` and `code` are the API's answer.
- `SetupError`: what an operator must fix before jobhook can run (secrets, the handler registry,
  the dev stack's cluster and migrations).

Each message names the problem and the fix.
"""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    """public.job_status. Each value says who moves a job out of it."""

    PENDING = "pending"  # the runner's claim; the owner's cancel; the sweep (never picked up)
    # complete / fail / release / acknowledge_cancel (the runner); the sweep when the lease
    # expires: each through jobhook.finish_attempts
    PROCESSING = "processing"
    COMPLETED = "completed"  # final; pruned by the sweep after retention_days
    FAILED = "failed"  # final; pruned by the sweep after retention_days
    CANCELLED = "cancelled"  # final; pruned by the sweep after retention_days

    @property
    def finished(self) -> bool:
        return self in FINISHED


FINISHED = frozenset({JobStatus.COMPLETED, JobStatus.FAILED, JobStatus.CANCELLED})


class FailureKind(StrEnum):
    """jobhook.failure_kind: why an attempt did not complete, the `kind` of each entry of
    public.jobs.errors. Each value says who records it."""

    ERROR = "error"  # the runner: the handler raised (a JobError, or anything unexpected)
    TIMEOUT = "timeout"  # the runner: the handler ran past its type's timeout
    INVALID_PARAMETERS = "invalid_parameters"  # the runner: the payload fails the handler's model
    INVALID_PAYLOAD = "invalid_payload"  # the runner: the payload cannot be read at all
    UNKNOWN_JOB_TYPE = "unknown_job_type"  # the runner: no handler for the type here
    BAD_RESULT = "bad_result"  # the runner: the handler's result cannot be stored
    RELEASED = "released"  # jobhook.release: a shutdown handed the attempt back, unspent
    LEASE_EXPIRED = "lease_expired"  # the sweep: the runner stopped heartbeating
    UNDELIVERED = "undelivered"  # the sweep: rung max_dispatches times, never claimed
    NOT_STARTED = "not_started"  # the sweep: due longer than stuck_timeout_minutes
    INVALID_RUN_AT = "invalid_run_at"  # a migration: a run_at the runtime cannot represent


class JobError(Exception):
    """Raise from a handler to fail the attempt with this message; retried while attempts last."""

    retryable = True
    kind = FailureKind.ERROR


class PermanentJobError(JobError):
    """Raise from a handler to fail the job at once: retrying cannot help (bad input, 4xx...)."""

    retryable = False


class ClientError(Exception):
    """A client's request cannot be served as asked. The API answers `status` with `code` (stable,
    for programs) and the message (what to do, for people)."""

    status = 400
    code = "bad_request"
    details: object = None
    headers: dict[str, str] | None = None


class SetupError(Exception):
    """jobhook cannot run as it is set up; the message names the setting or step and the fix."""
