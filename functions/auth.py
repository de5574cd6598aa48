"""Who is calling: a Supabase access token (JWT), or a service holding the API key.

Supabase signs access tokens with the project's legacy HS256 secret or, with the newer signing
keys, with ES256/RS256 keys published at `$SUPABASE_URL/auth/v1/.well-known/jwks.json`. The token's
header says which; HS256 only when SUPABASE_JWT_SECRET is set, the others only with SUPABASE_URL.
Either way the claims are held to what Supabase Auth issues to a signed-in user. Every failure is
a 401 that says why, so a client can tell an expired session from a misconfigured project.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import UUID

import jwt
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from functions.errors import ApiError
from jobhook.client import Caller
from jobhook.config import Settings

SYMMETRIC = ("HS256",)
ASYMMETRIC = ("ES256", "RS256")
AUDIENCE = "authenticated"
# The only role a user's access token may carry: anon and service_role keys are signed with the
# same secret, and a token naming any other role must not reach the database as someone.
ROLE = "authenticated"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="jobhook"'}
# NumericDate claims beyond 9999-12-31 (or before 1970) are not dates any issuer writes.
LATEST_TIMESTAMP = 253_402_300_799
NUMERIC_DATES = ("exp", "nbf", "iat")

bearer = HTTPBearer(auto_error=False, description="A Supabase access token")
api_key_header = APIKeyHeader(name="X-API-Key", auto_error=False, description="The service API key")


def unauthorized(reason: str, message: str) -> ApiError:
    return ApiError(401, "unauthorized", message, {"reason": reason}, CHALLENGE)


@dataclass
class Authenticator:
    settings: Settings
    _jwks: jwt.PyJWKClient | None = None

    def __post_init__(self) -> None:
        if self.settings.supabase_url:
            self._jwks = jwt.PyJWKClient(
                f"{self.settings.supabase_url.rstrip('/')}/auth/v1/.well-known/jwks.json",
                cache_jwk_set=True,
                lifespan=self.settings.jwks_cache_seconds,
                timeout=5,
                # A token with an unknown key id (keys were rotated) refetches the set, at most
                # once per cooldown, so garbage key ids cannot make us hammer the endpoint.
                cooldown_duration=self.settings.jwks_refetch_cooldown_seconds,
            )

    @property
    def not_configured(self) -> str | None:
        """Why no token can be verified, or None when some can."""
        if self._jwks is None and self.settings.supabase_jwt_secret is None:
            return (
                "user tokens cannot be verified: set SUPABASE_URL (the project's JWKS, for the "
                "new signing keys) and, if the project still signs with the legacy secret, "
                "SUPABASE_JWT_SECRET as well"
            )
        return None

    async def caller(self, token: str) -> Caller:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError as exc:
            raise unauthorized("malformed", f"the token is not a JWT: {exc}") from None
        key: Any
        if algorithm in SYMMETRIC:
            if self.settings.supabase_jwt_secret is None:
                raise unauthorized(
                    "no_secret",
                    f"{algorithm} tokens are not accepted here: SUPABASE_JWT_SECRET is not set "
                    "(a project on the new signing keys issues ES256 tokens)",
                )
            key = self.settings.supabase_jwt_secret
        elif algorithm in ASYMMETRIC:
            if self._jwks is None:
                raise unauthorized(
                    "no_jwks", f"{algorithm} tokens need SUPABASE_URL, to read the project's JWKS"
                )
            key = await self._signing_key(token)
        else:
            raise unauthorized(
                "algorithm",
                f"tokens signed with {algorithm} are not accepted (use HS256, ES256 or RS256)",
            )
        try:
            # PyJWT checks the signature only; the claims are checked below, in an order that
            # names the real problem (an anon key is refused for its role, not its audience).
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                options={
                    "verify_aud": False,
                    "verify_iss": False,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                    "verify_sub": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise unauthorized("signature", "the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise unauthorized("invalid", f"the token is invalid: {exc}") from None
        check_claims(claims, self.settings.token_issuer, self.settings.jwt_leeway_seconds)
        return Caller(claims)

    async def _signing_key(self, token: str) -> Any:
        assert self._jwks is not None
        try:
            # PyJWKClient fetches with urllib; keep the event loop free while it does.
            signing_key = await asyncio.to_thread(self._jwks.get_signing_key_from_jwt, token)
        except jwt.PyJWKClientConnectionError as exc:
            raise ApiError(
                503, "jwks_unavailable", f"the project's JWKS could not be fetched: {exc}"
            ) from None
        except jwt.PyJWTError as exc:
            raise unauthorized(
                "unknown_key", f"the token's signing key is not in the project's JWKS: {exc}"
            ) from None
        return signing_key.key


def check_claims(claims: dict[str, Any], issuer: str, leeway: float) -> None:
    """Hold verified claims to what Supabase Auth issues a signed-in user; 401 naming the first
    one that is missing or wrong."""
    if "role" not in claims:
        raise unauthorized("claims", "the token lacks the 'role' claim")
    role = claims["role"]
    if role != ROLE:
        raise unauthorized(
            "role",
            f"the token's role is {_shown(role)}, not '{ROLE}': only a signed-in user's access "
            "token may call this API (anon and service_role keys cannot; backends use /service "
            "with X-API-Key)",
        )
    for name in ("aud", "iss", "sub", "exp"):
        if name not in claims:
            raise unauthorized("claims", f"the token lacks the '{name}' claim")
    audience = claims["aud"]
    if audience != AUDIENCE and not (isinstance(audience, list) and AUDIENCE in audience):
        raise unauthorized(
            "audience",
            f"the token's audience is not '{AUDIENCE}': sign in as a user (anon keys "
            "cannot call this API)",
        )
    if claims["iss"] != issuer:
        raise unauthorized(
            "issuer",
            f"the token was issued by {_shown(claims['iss'])}, not by {issuer} "
            "(SUPABASE_URL names the project whose tokens are accepted)",
        )
    subject = claims["sub"]
    if not _is_uuid(subject):
        raise unauthorized(
            "claims", f"the token's 'sub' claim must be a user id (a UUID), not {_shown(subject)}"
        )
    dates: dict[str, float] = {}
    for name in NUMERIC_DATES:
        if name in claims:
            value = claims[name]
            if not _is_numeric_date(value):
                raise unauthorized(
                    "claims",
                    f"the token's '{name}' claim must be seconds since 1970 (a JSON number up "
                    f"to {LATEST_TIMESTAMP}), not {_shown(value)}",
                )
            dates[name] = value
    now = time.time()
    if dates["exp"] <= now - leeway:
        raise unauthorized(
            "expired", f"the token expired at {_iso(dates['exp'])}; refresh the session"
        )
    for name in ("nbf", "iat"):
        if name in dates and dates[name] > now + leeway:
            raise unauthorized(
                "not_yet_valid",
                f"the token's '{name}' is {_iso(dates[name])}, in the future: check the clock "
                "of the machine that issued it",
            )


def _is_uuid(value: Any) -> bool:
    if not isinstance(value, str) or len(value) != 36:
        return False
    try:
        return str(UUID(value)) == value.lower()
    except ValueError:
        return False


def _is_numeric_date(value: Any) -> bool:
    return (
        isinstance(value, int | float)
        and not isinstance(value, bool)
        and math.isfinite(value)
        and 0 <= value <= LATEST_TIMESTAMP
    )


def _iso(timestamp: float) -> str:
    return datetime.fromtimestamp(timestamp, UTC).isoformat()


def _shown(value: Any, limit: int = 60) -> str:
    """A claim's value for a message: JSON, cut short, so a 10 KB claim is not echoed back."""
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else f"{text[:limit]}... ({len(text)} characters)"


async def get_authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


async def current_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    authenticator: Annotated[Authenticator, Depends(get_authenticator)],
) -> Caller:
    # Before the token: without a way to verify any, no token could pass, and saying so
    # spares the client a hunt for what is wrong with theirs.
    if problem := authenticator.not_configured:
        raise ApiError(503, "auth_not_configured", problem)
    if credentials is None:
        header = request.headers.get("authorization")
        if header:
            raise unauthorized("scheme", "the Authorization header must be 'Bearer <token>'")
        raise unauthorized(
            "missing", "no token: send 'Authorization: Bearer <Supabase access token>'"
        )
    caller = await authenticator.caller(credentials.credentials)
    request.state.user_id = caller.claims.get("sub")
    return caller


async def service_key(
    request: Request, key: Annotated[str | None, Depends(api_key_header)]
) -> None:
    expected = request.app.state.runtime.settings.api_key
    if expected is None:
        raise ApiError(
            403,
            "service_api_disabled",
            "service endpoints are off: set JOBHOOK_API_KEY to use them",
        )
    if not _same_key(key, expected):
        raise ApiError(401, "unauthorized", "missing or wrong X-API-Key", {"reason": "api_key"})


async def operator_details(request: Request) -> bool:
    """Whether this caller may read the operator's details (metrics, why the app is not
    ready): anyone when JOBHOOK_PUBLIC_OPERATOR_ENDPOINTS is on, else a holder of the API key.
    A key that is sent but wrong is a 401, not a silent downgrade."""
    settings: Settings = request.app.state.runtime.settings
    if settings.public_operator_endpoints:
        return True
    key = request.headers.get("x-api-key")
    if key is None:
        return False
    if settings.api_key is None or not _same_key(key, settings.api_key):
        raise ApiError(
            401,
            "unauthorized",
            "wrong X-API-Key: operator details need the service key (JOBHOOK_API_KEY)",
            {"reason": "api_key"},
        )
    return True


async def operator_only(
    request: Request, allowed: Annotated[bool, Depends(operator_details)]
) -> None:
    if allowed:
        return
    if request.app.state.runtime.settings.api_key is None:
        raise ApiError(
            403,
            "operator_endpoints_closed",
            "this endpoint needs the service key, and none is set: set JOBHOOK_API_KEY and send "
            "it as X-API-Key, or JOBHOOK_PUBLIC_OPERATOR_ENDPOINTS=true to open it to anyone",
        )
    raise ApiError(
        401,
        "unauthorized",
        "this endpoint needs X-API-Key (JOBHOOK_API_KEY), unless "
        "JOBHOOK_PUBLIC_OPERATOR_ENDPOINTS=true opens it to anyone",
        {"reason": "api_key"},
    )


def _same_key(given: str | None, expected: str) -> bool:
    # Constant time: the comparison must not tell how much of a guess was right.
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


CurrentCaller = Annotated[Caller, Depends(current_caller)]
ServiceKey = Depends(service_key)
OperatorDetails = Annotated[bool, Depends(operator_details)]
OperatorOnly = Depends(operator_only)
