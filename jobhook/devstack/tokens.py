"""JWTs for the local stack, shaped like the ones Supabase Auth issues to a signed-in user."""

from __future__ import annotations

import time
import uuid
from typing import Any

import jwt

from jobhook.config import LOCAL_ISSUER, LOCAL_JWT_SECRET


def user_token(
    user_id: str,
    *,
    secret: str = LOCAL_JWT_SECRET,
    expires_in: int = 3600,
    email: str | None = None,
    issuer: str = LOCAL_ISSUER,
) -> str:
    now = int(time.time())
    claims: dict[str, Any] = {
        "iss": issuer,
        "sub": user_id,
        "aud": "authenticated",
        "role": "authenticated",
        "iat": now,
        "exp": now + expires_in,
        "aal": "aal1",
        "session_id": str(uuid.uuid4()),
        "is_anonymous": False,
    }
    if email:
        claims["email"] = email
    return jwt.encode(claims, secret, algorithm="HS256")
