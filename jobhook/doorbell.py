"""The doorbell's contract: Standard Webhooks verification and the event models.

The raw bytes are verified first (svix, constant-time comparison, 5 minute tolerance) against
every configured secret, so a secret can be rotated without dropping deliveries; only then is the
body parsed, into a model discriminated on `type`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter
from svix.webhooks import Webhook, WebhookVerificationError

from jobhook.jobs import ClientError, SetupError

MAX_BODY_BYTES = 1024 * 1024
MAX_JOBS_PER_DELIVERY = 500


class InvalidWebhook(ClientError):
    """The delivery is refused. `reason` is a bounded label for metrics and logs."""

    status = 401
    code = "invalid_signature"

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class DispatchedJob(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: UUID
    job_type: str = Field(min_length=1, max_length=63)


class DispatchEvent(BaseModel):
    """Jobs that are due: {"type": "jobs.dispatch", "jobs": [{"id", "job_type"}, ...]}."""

    type: Literal["jobs.dispatch"]
    jobs: list[DispatchedJob] = Field(min_length=1, max_length=MAX_JOBS_PER_DELIVERY)


class PingEvent(BaseModel):
    """A signed no-op, to check the URL and the secrets end to end."""

    type: Literal["jobs.ping"]


WebhookEvent = Annotated[DispatchEvent | PingEvent, Field(discriminator="type")]
events: TypeAdapter[DispatchEvent | PingEvent] = TypeAdapter(WebhookEvent)

_REASONS = {
    "Missing required headers": (
        "missing_headers",
        "webhook-id, webhook-timestamp and webhook-signature are required",
    ),
    "Invalid Signature Headers": (
        "malformed_headers",
        "webhook-timestamp is not a number of seconds",
    ),
    "Message timestamp too old": (
        "stale_timestamp",
        "webhook-timestamp is more than 5 minutes old",
    ),
    "Message timestamp too new": (
        "future_timestamp",
        "webhook-timestamp is more than 5 minutes ahead",
    ),
    "No matching signature found": (
        "bad_signature",
        "no signature matches the body with any configured secret",
    ),
}


class Verifier:
    def __init__(self, secrets: Iterable[str]) -> None:
        self._webhooks = []
        for position, secret in enumerate(secrets, start=1):
            try:
                self._webhooks.append(Webhook(secret))
            except Exception as exc:
                # Never echo the secret: say which one is wrong.
                raise SetupError(
                    f"webhook secret #{position} is not a valid Standard Webhooks secret "
                    "(whsec_ followed by base64)"
                ) from exc
        if not self._webhooks:
            raise SetupError("no webhook secret is configured: set JOBHOOK_WEBHOOK_SECRETS")

    def verify(self, body: bytes, headers: Mapping[str, str]) -> None:
        """Return if any secret verifies the body; raise InvalidWebhook otherwise."""
        plain = {key.lower(): value for key, value in headers.items()}
        failure = InvalidWebhook("bad_signature", _REASONS["No matching signature found"][1])
        for webhook in self._webhooks:
            try:
                webhook.verify(body, plain)
                return
            except WebhookVerificationError as exc:
                reason, message = _REASONS.get(str(exc), ("bad_signature", str(exc)))
                failure = InvalidWebhook(reason, message)
                if reason != "bad_signature":
                    break  # headers or timestamp: the same for every secret
            except UnicodeDecodeError:
                raise InvalidWebhook("malformed_body", "the body is not UTF-8") from None
            except (ValueError, TypeError):
                # svix raises these for a signature header without "v1,<base64>" pairs.
                raise InvalidWebhook(
                    "malformed_signature", "webhook-signature is not a list of v1,<base64> pairs"
                ) from None
        raise failure
