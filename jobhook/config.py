"""Settings from the environment, read once at start-up. Names match DESIGN.md's interface."""

from __future__ import annotations

from functools import lru_cache
from typing import Annotated

from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

LOCAL_DATABASE_URL = "postgresql://postgres:postgres@127.0.0.1:54322/postgres"
# The user supabase/seed.sql creates: who `jobhook demo`, `submit` and `jobs` act as by default.
DEMO_USER_ID = "00000000-0000-4000-8000-00000000d3e0"
# The supabase CLI's default local JWT secret (supabase/cli pkg/config/constants.go): not a
# secret, it signs tokens for a database that only listens on loopback.
LOCAL_JWT_SECRET = "super-secret-jwt-token-with-at-least-32-characters-long"  # noqa: S105


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", extra="ignore")

    database_url: str = Field(LOCAL_DATABASE_URL, validation_alias="DATABASE_URL")
    # Comma-separated; the first signs (when the dev stack seeds Vault), all verify (rotation).
    # Unset: the app reads the signing secret from Vault.
    webhook_secrets: Annotated[list[str], NoDecode] = Field(
        default_factory=list, validation_alias="JOBHOOK_WEBHOOK_SECRETS"
    )
    supabase_url: str | None = Field(None, validation_alias="SUPABASE_URL")
    supabase_jwt_secret: str = Field(LOCAL_JWT_SECRET, validation_alias="SUPABASE_JWT_SECRET")
    job_stuck_timeout_minutes: int | None = Field(
        None, ge=1, validation_alias="JOB_STUCK_TIMEOUT_MINUTES"
    )

    # Service-to-service calls (X-API-Key) are refused while this is unset.
    api_key: str | None = Field(None, min_length=32, validation_alias="JOBHOOK_API_KEY")
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

    executor: str = Field("local", pattern="^(local|modal)$", validation_alias="JOBHOOK_EXECUTOR")
    max_concurrency: int = Field(64, ge=1, validation_alias="JOBHOOK_MAX_CONCURRENCY")
    max_concurrency_per_type: int = Field(
        32, ge=1, validation_alias="JOBHOOK_MAX_CONCURRENCY_PER_TYPE"
    )
    worker_id: str | None = Field(None, validation_alias="JOBHOOK_WORKER_ID")
    # On shutdown (a deploy, Ctrl-C), how long running attempts may take to finish before they
    # are released back to pending. Inside Modal's grace period for stopping a container.
    shutdown_grace_seconds: float = Field(
        20, ge=0, le=3600, validation_alias="JOBHOOK_SHUTDOWN_GRACE_SECONDS"
    )

    @field_validator("webhook_secrets", "cors_origins", mode="before")
    @classmethod
    def _split(cls, value: object) -> object:
        if isinstance(value, str):
            return [part.strip() for part in value.split(",") if part.strip()]
        return value


@lru_cache
def get_settings() -> Settings:
    return Settings()
