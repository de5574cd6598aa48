"""Who may use the dashboard, and how a signed-in operator is remembered.

An operator signs in once with a Supabase access token whose `app_metadata` holds the operator
claim (JOBHOOK_OPERATOR_CLAIM set to true: app_metadata is written only with the project's
service role, never by the user), or with the service API key, for projects without operator
accounts. The dashboard then keeps a session cookie of its own: HMAC-signed, HttpOnly,
SameSite=Strict, Secure unless the dashboard is served on loopback, valid until the token would
have expired (at most JOBHOOK_SESSION_HOURS). Each session carries a CSRF token that every form
sends back; an action without it, or from another origin, is refused.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import time
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from starlette.responses import Response

from functions.auth import Authenticator
from functions.errors import ApiError
from jobhook.config import Settings
from jobhook.jobs import ClientError

COOKIE = "jobhook_session"
PATH = "/dashboard"
LOOPBACK = frozenset({"127.0.0.1", "localhost", "::1", "[::1]"})
# Bounded where it enters: no token or key we accept is longer.
MAX_CREDENTIAL = 16_384


class SignInRefused(ClientError):
    """The credential is not an operator's; the message says why."""

    status = 401
    code = "sign_in_refused"


@dataclass(frozen=True)
class Operator:
    # Who, as recorded with every action: "user <id> (<email>)" or "service key".
    actor: str
    csrf: str
    expires: int


class Sessions:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        if settings.session_secret:
            key = settings.session_secret.encode()
        elif settings.api_key:
            # Derived, so every container holding the same key accepts the same sessions.
            key = hmac.new(
                settings.api_key.encode(), b"jobhook dashboard sessions", "sha256"
            ).digest()
        else:
            key = secrets.token_bytes(32)
        self._key = key

    async def sign_in(self, credential: str, authenticator: Authenticator) -> Operator:
        credential = credential.strip()
        if not credential or len(credential) > MAX_CREDENTIAL:
            raise SignInRefused("paste a Supabase access token or the service API key")
        now = int(time.time())
        longest = now + int(self.settings.session_hours * 3600)
        api_key = self.settings.api_key
        if api_key is not None and hmac.compare_digest(credential.encode(), api_key.encode()):
            return self._new("service key", longest)
        if credential.count(".") != 2:
            raise SignInRefused("neither the service API key nor a JWT")
        try:
            caller = await authenticator.caller(credential)
        except ApiError as exc:
            raise SignInRefused(exc.message) from None
        claims = caller.claims
        metadata = claims.get("app_metadata")
        claim = self.settings.operator_claim
        if not isinstance(metadata, dict) or metadata.get(claim) is not True:
            raise SignInRefused(
                f"this user is not an operator: their app_metadata lacks {claim!r}: true "
                "(set it with the service role: auth.admin.updateUserById)"
            )
        email = claims.get("email")
        actor = f"user {claims['sub']}" + (f" ({email})" if isinstance(email, str) else "")
        return self._new(actor[:200], min(longest, int(claims["exp"])))

    def _new(self, actor: str, expires: int) -> Operator:
        return Operator(actor=actor, csrf=secrets.token_urlsafe(32), expires=expires)

    def cookie_value(self, operator: Operator) -> str:
        body = json.dumps(
            {"actor": operator.actor, "csrf": operator.csrf, "exp": operator.expires},
            separators=(",", ":"),
        ).encode()
        encoded = base64.urlsafe_b64encode(body).decode().rstrip("=")
        return f"{encoded}.{self._sign(encoded)}"

    def read(self, value: str | None) -> Operator | None:
        if not value or len(value) > 4096 or "." not in value:
            return None
        encoded, signature = value.rsplit(".", 1)
        if not hmac.compare_digest(signature, self._sign(encoded)):
            return None
        try:
            data: dict[str, Any] = json.loads(
                base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            )
            operator = Operator(
                actor=str(data["actor"]), csrf=str(data["csrf"]), expires=int(data["exp"])
            )
        except (ValueError, KeyError, TypeError):
            return None
        return operator if operator.expires > time.time() else None

    def _sign(self, encoded: str) -> str:
        digest = hmac.new(self._key, encoded.encode(), hashlib.sha256).digest()
        return base64.urlsafe_b64encode(digest).decode().rstrip("=")

    def set_cookie(self, response: Response, request: Request, operator: Operator) -> None:
        response.set_cookie(
            COOKIE,
            self.cookie_value(operator),
            max_age=max(0, operator.expires - int(time.time())),
            path=PATH,
            httponly=True,
            secure=not is_loopback(request),
            samesite="strict",
        )

    def clear_cookie(self, response: Response, request: Request) -> None:
        response.delete_cookie(
            COOKIE, path=PATH, httponly=True, secure=not is_loopback(request), samesite="strict"
        )


def is_loopback(request: Request) -> bool:
    return (request.url.hostname or "") in LOOPBACK


class NotSignedIn(ClientError):
    """No valid session: pages send the browser to the sign-in form, fragments answer 401."""

    status = 401
    code = "not_signed_in"


async def get_sessions(request: Request) -> Sessions:
    sessions: Sessions = request.app.state.sessions
    return sessions


async def current_operator(
    request: Request, sessions: Annotated[Sessions, Depends(get_sessions)]
) -> Operator:
    operator = sessions.read(request.cookies.get(COOKIE))
    if operator is None:
        raise NotSignedIn()
    return operator


def same_origin(request: Request) -> bool:
    """A browser names the page a form was sent from; it must be this dashboard's origin."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        return origin is None
    return origin == f"{request.url.scheme}://{request.url.netloc}"


def csrf_holds(request: Request, operator: Operator, token: str | None) -> bool:
    return (
        token is not None
        and same_origin(request)
        and hmac.compare_digest(token.encode(), operator.csrf.encode())
    )


CurrentOperator = Annotated[Operator, Depends(current_operator)]
SessionsDep = Annotated[Sessions, Depends(get_sessions)]
