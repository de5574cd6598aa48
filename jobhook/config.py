"""Settings from the environment, read once at start-up. Names match DESIGN.md's interface."""

from __future__ import annotations

import ipaddress
from functools import lru_cache
from typing import Annotated
from urllib.parse import urlsplit

from psycopg import ProgrammingError
from psycopg.conninfo import conninfo_to_dict
from pydantic import Field, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from jobhook.store import Limits

LOCAL_DATABASE_URL = "postgresql://postgres:postgres@127.0.0.1:54322/postgres"
# The user supabase/seed.sql creates: who `jobhook demo`, `submit` and `jobs` act as by default.
DEMO_USER_ID = "00000000-0000-4000-8000-00000000d3e0"
# The supabase CLI's default local JWT secret (supabase/cli pkg/config/constants.go): published,
# so anyone can sign with it. Only the dev stack and the tests pass it, explicitly; Settings
# refuses it beside a database or a project that is not on this machine.
LOCAL_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"  # noqa: S105
# The issuer of the supabase CLI's local Auth (API on port 54321): what local tokens carry.
LOCAL_ISSUER = "http://127.0.0.1:54321/auth/v1"
# Supabase's JWT secrets are at least this long; a shorter one is a truncated paste.
MIN_JWT_SECRET_LENGTH = 32


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = Field(LOCAL_DATABASE_URL, validation_alias="DATABASE_URL")
    # Comma-separated; the first signs (when the dev stack seeds Vault), all verify (rotation).
    # Unset: the app reads the signing secret from Vault.
    webhook_secrets: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="JOBHOOK_WEBHOOK_SECRETS"
    )
    supabase_url: str | None = Field(None, validation_alias="SUPABASE_URL")
    # Unset: HS256 tokens are refused (projects on the new signing keys need only SUPABASE_URL).
    supabase_jwt_secret: str | None = Field(None, validation_alias="SUPABASE_JWT_SECRET")
    job_stuck_timeout_minutes: int | None = Field(
        None, ge=1, validation_alias="JOB_STUCK_TIMEOUT_MINUTES"
    )

    # Service-to-service calls (X-API-Key) are refused while this is unset.
    api_key: str | None = Field(None, min_length=32, validation_alias="JOBHOOK_API_KEY")
    # /metrics, and the reasons /ready and /health/db give, for anyone; off, they need X-API-Key.
    public_operator_endpoints: bool = Field(
        False, validation_alias="JOBHOOK_PUBLIC_OPERATOR_ENDPOINTS"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="JOBHOOK_CORS_ORIGINS"
    )
    # Per user, on POST /jobs, in the `limits` notation ("20/second", "600/minute").
    rate_limit: str = Field("20/second", validation_alias="JOBHOOK_RATE_LIMIT")
    jwt_leeway_seconds: int = Field(30, ge=0, le=300, validation_alias="JOBHOOK_JWT_LEEWAY_SECONDS")
    # How long the JWKS is cached, and how soon an unknown key id may trigger a refetch.
    jwks_cache_seconds: int = Field(600, ge=1, validation_alias="JOBHOOK_JWKS_CACHE_SECONDS")
    jwks_refetch_cooldown_seconds: float = Field(
        30, ge=0, validation_alias="JOBHOOK_JWKS_REFETCH_COOLDOWN_SECONDS"
    )

    max_concurrency: int = Field(64, ge=1, validation_alias="JOBHOOK_MAX_CONCURRENCY")
    max_concurrency_per_type: int = Field(
        32, ge=1, validation_alias="JOBHOOK_MAX_CONCURRENCY_PER_TYPE"
    )
    worker_id: str | None = Field(None, validation_alias="JOBHOOK_WORKER_ID")
    # Connections per process, in two pools so that neither side can starve the other: the
    # runtime's (claims, heartbeats, write-backs, the ticker) and the REST API's. The budget a
    # deployment needs from the pooler: docs/deploy.md.
    db_pool_size: int = Field(10, ge=2, le=200, validation_alias="JOBHOOK_DB_POOL_SIZE")
    api_pool_size: int = Field(5, ge=1, le=200, validation_alias="JOBHOOK_API_POOL_SIZE")
    # Every database call of the runtime and the API runs under these, per transaction.
    statement_timeout_ms: int = Field(
        30_000, ge=100, le=3_600_000, validation_alias="JOBHOOK_STATEMENT_TIMEOUT_MS"
    )
    lock_timeout_ms: int = Field(
        5_000, ge=10, le=3_600_000, validation_alias="JOBHOOK_LOCK_TIMEOUT_MS"
    )
    # A runner that has run dry keeps watching for shared doorbells this long, reading a
    # counter every poll interval; inserts of its types meanwhile do not ring (jobhook.drains).
    # 0: never linger, every insert that takes the doorbell's turn rings.
    drain_linger_ms: int = Field(50, ge=0, le=10_000, validation_alias="JOBHOOK_DRAIN_LINGER_MS")
    drain_poll_ms: int = Field(1, ge=1, le=1000, validation_alias="JOBHOOK_DRAIN_POLL_MS")
    # On shutdown (a deploy, Ctrl-C), how long running attempts may take to finish before they
    # are released back to pending. Inside Modal's grace period for stopping a container.
    shutdown_grace_seconds: float = Field(
        20, ge=0, le=3600, validation_alias="JOBHOOK_SHUTDOWN_GRACE_SECONDS"
    )
    # Each progress write is a row update and a Realtime message per subscriber (100 messages/s
    # per project on Supabase's free plan): at most one per this many seconds per job, and what
    # is still waiting when the handler returns goes out with the outcome instead.
    progress_interval_seconds: float = Field(
        1.0, ge=0, le=60, validation_alias="JOBHOOK_PROGRESS_INTERVAL_SECONDS"
    )
    # A result over this many bytes of JSON fails its job. Realtime sends nothing but an error
    # for a record over 1 MiB, and the row also holds the payload (jobhook.settings'
    # max_payload_bytes, 64 KiB by default) and the errors.
    max_result_bytes: int = Field(
        262_144, ge=1024, le=10_485_760, validation_alias="JOBHOOK_MAX_RESULT_BYTES"
    )

    # The dashboard: who may sign in with a Supabase access token (its app_metadata must hold
    # this key, set to true; app_metadata is written only by the project's service role), and
    # the key its session cookies are signed with (unset: one made at start-up, so sessions end
    # with the process and do not carry across containers).
    operator_claim: str = Field(
        "jobhook_operator",
        min_length=1,
        max_length=100,
        pattern=r"^[A-Za-z0-9_.-]+$",
        validation_alias="JOBHOOK_OPERATOR_CLAIM",
    )
    session_secret: str | None = Field(
        None, min_length=32, validation_alias="JOBHOOK_SESSION_SECRET"
    )
    session_hours: float = Field(8, gt=0, le=168, validation_alias="JOBHOOK_SESSION_HOURS")
    # Alerts: a Slack-compatible incoming webhook (POST {"text": ...}); unset, none are sent.
    alert_webhook_url: str | None = Field(None, validation_alias="JOBHOOK_ALERT_WEBHOOK_URL")
    # At most one message per kind of alert in this many seconds.
    alert_every_seconds: float = Field(
        300, ge=1, le=86400, validation_alias="JOBHOOK_ALERT_EVERY_SECONDS"
    )
    # A due job waiting longer than this is an alert.
    alert_waiting_seconds: float = Field(
        300, ge=1, validation_alias="JOBHOOK_ALERT_WAITING_SECONDS"
    )

    @property
    def limits(self) -> Limits:
        return Limits(self.statement_timeout_ms, self.lock_timeout_ms)

    @field_validator("webhook_secrets", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value

    @field_validator(
        "supabase_url", "supabase_jwt_secret", "session_secret", "alert_webhook_url", mode="before"
    )
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        # A secret store that holds `SUPABASE_JWT_SECRET=` means "not set", not "the empty key".
        if isinstance(value, str) and not value.strip():
            return None
        return value

    @field_validator("supabase_jwt_secret")
    @classmethod
    def _long_enough(cls, value: str | None) -> str | None:
        if value is not None and len(value) < MIN_JWT_SECRET_LENGTH:
            raise ValueError(
                f"SUPABASE_JWT_SECRET is {len(value)} characters, and Supabase's JWT secrets are "
                f"at least {MIN_JWT_SECRET_LENGTH}: copy the whole legacy JWT secret from the "
                "project's API settings, or unset it if the project uses the new signing keys"
            )
        return value

    @model_validator(mode="after")
    def _local_secret_stays_local(self) -> Settings:
        secret = self.supabase_jwt_secret
        if secret is None:
            return self
        if self.supabase_url is None and secret != LOCAL_JWT_SECRET:
            raise ValueError(
                "SUPABASE_JWT_SECRET needs SUPABASE_URL too (https://<ref>.supabase.co): HS256 "
                "tokens are only accepted from that project's Auth, <SUPABASE_URL>/auth/v1"
            )
        if secret == LOCAL_JWT_SECRET:
            remote = [
                name
                for name, local in (
                    ("SUPABASE_URL", self.supabase_url is None or _url_is_local(self.supabase_url)),
                    ("DATABASE_URL", _database_is_local(self.database_url)),
                )
                if not local
            ]
            if remote:
                raise ValueError(
                    "SUPABASE_JWT_SECRET is the supabase CLI's published local secret, with which "
                    f"anyone can sign tokens, but {' and '.join(remote)} is not on this machine: "
                    "set the project's own JWT secret, or unset it if the project uses the new "
                    "signing keys (SUPABASE_URL alone)"
                )
        return self

    @property
    def token_issuer(self) -> str:
        """The `iss` every accepted token must carry: the project's Auth, or the local one."""
        if self.supabase_url is None:
            return LOCAL_ISSUER
        return f"{self.supabase_url.rstrip('/')}/auth/v1"


def _is_loopback(host: str | None) -> bool:
    if not host or host.startswith("/"):
        return True  # no host, or a Unix socket's directory: this machine
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _url_is_local(url: str) -> bool:
    try:
        host = urlsplit(url).hostname
    except ValueError:
        return False
    return host is not None and _is_loopback(host)


def _database_is_local(url: str) -> bool:
    try:
        hosts = conninfo_to_dict(url).get("host")
    except ProgrammingError:
        return False  # psycopg will say what is wrong with it when it connects
    return all(_is_loopback(host) for host in str(hosts or "").split(","))


@lru_cache
def get_settings() -> Settings:
    return Settings()
