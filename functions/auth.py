"""Who is calling: a Supabase access token (JWT), or a service holding the API key.

Supabase signs access tokens with the project's legacy HS256 secret or, with the newer signing
keys, with ES256/RS256 keys published at `$SUPABASE_URL/auth/v1/.well-known/jwks.json`. The token's
header says which; both are accepted. Every failure is a 401 that says why, so a client can tell
an expired session from a misconfigured project.
"""

from __future__ import annotations

import asyncio
import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import jwt
import jwt.types
from fastapi import Depends, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from functions.errors import ApiError
from jobhook.client import Caller
from jobhook.config import Settings

SYMMETRIC = ("HS256",)
ASYMMETRIC = ("ES256", "RS256")
AUDIENCE = "authenticated"
CHALLENGE = {"WWW-Authenticate": 'Bearer realm="jobhook"'}

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

    async def caller(self, token: str) -> Caller:
        try:
            algorithm = jwt.get_unverified_header(token).get("alg")
        except jwt.PyJWTError as exc:
            raise unauthorized("malformed", f"the token is not a JWT: {exc}") from None
        key: Any
        options: jwt.types.Options = {"require": ["exp", "sub"]}
        issuer = None
        if algorithm in SYMMETRIC:
            key = self.settings.supabase_jwt_secret
        elif algorithm in ASYMMETRIC:
            if self._jwks is None:
                raise unauthorized(
                    "no_jwks", f"{algorithm} tokens need SUPABASE_URL, to read the project's JWKS"
                )
            key = await self._signing_key(token)
            issuer = f"{self.settings.supabase_url.rstrip('/')}/auth/v1"  # type: ignore[union-attr]
        else:
            raise unauthorized(
                "algorithm",
                f"tokens signed with {algorithm} are not accepted (use HS256, ES256 or RS256)",
            )
        try:
            claims = jwt.decode(
                token,
                key,
                algorithms=[algorithm],
                audience=AUDIENCE,
                issuer=issuer,
                leeway=self.settings.jwt_leeway_seconds,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            expired = jwt.decode(token, options={"verify_signature": False}).get("exp")
            when = datetime.fromtimestamp(expired, UTC).isoformat() if expired else "some time"
            raise unauthorized(
                "expired", f"the token expired at {when}; refresh the session"
            ) from None
        except jwt.InvalidAudienceError:
            raise unauthorized(
                "audience",
                f"the token's audience is not '{AUDIENCE}': sign in as a user (anon keys "
                "cannot call this API)",
            ) from None
        except jwt.InvalidIssuerError:
            raise unauthorized("issuer", f"the token was not issued by {issuer}") from None
        except jwt.MissingRequiredClaimError as exc:
            raise unauthorized("claims", f"the token lacks the '{exc.claim}' claim") from None
        except jwt.InvalidSignatureError:
            raise unauthorized("signature", "the token's signature does not verify") from None
        except jwt.PyJWTError as exc:
            raise unauthorized("invalid", f"the token is invalid: {exc}") from None
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


async def get_authenticator(request: Request) -> Authenticator:
    authenticator: Authenticator = request.app.state.authenticator
    return authenticator


async def current_caller(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
    authenticator: Annotated[Authenticator, Depends(get_authenticator)],
) -> Caller:
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
    # Constant time: the comparison must not tell how much of a guess was right.
    if key is None or not hmac.compare_digest(key.encode(), expected.encode()):
        raise ApiError(401, "unauthorized", "missing or wrong X-API-Key", {"reason": "api_key"})


CurrentCaller = Annotated[Caller, Depends(current_caller)]
ServiceKey = Depends(service_key)
