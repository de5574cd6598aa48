"""The auth matrix: every way a token can be wrong gets a 401 that says which.

Asymmetric tokens are checked against a JWKS served by a real HTTP server on loopback, shaped
like Supabase Auth's /auth/v1/.well-known/jwks.json, whose keys the tests rotate.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

from tests.conftest import DEMO_USER, AppFactory, QuietHandler, http_server, user_token

pytestmark = pytest.mark.commits


@dataclass
class Jwks:
    """A Supabase-shaped Auth server: the JWKS endpoint, and the keys to sign with."""

    url: str
    keys: dict[str, tuple[str, Any]] = field(default_factory=dict)  # kid -> (alg, private key)
    fetches: int = 0

    def add_es256(self, kid: str) -> None:
        self.keys[kid] = ("ES256", ec.generate_private_key(ec.SECP256R1()))

    def add_rs256(self, kid: str) -> None:
        self.keys[kid] = ("RS256", rsa.generate_private_key(public_exponent=65537, key_size=2048))

    def document(self) -> bytes:
        published = []
        for kid, (alg, private) in self.keys.items():
            codec = ECAlgorithm if alg == "ES256" else RSAAlgorithm
            jwk = json.loads(codec.to_jwk(private.public_key()))
            published.append({**jwk, "kid": kid, "alg": alg, "use": "sig"})
        return json.dumps({"keys": published}).encode()

    def token(self, kid: str, **overrides: Any) -> str:
        alg, private = self.keys[kid]
        now = int(time.time())
        claims = {
            "iss": f"{self.url}/auth/v1",
            "sub": DEMO_USER,
            "aud": "authenticated",
            "role": "authenticated",
            "exp": now + 600,
            **overrides,
        }
        return jwt.encode(claims, private, algorithm=alg, headers={"kid": kid})


@pytest.fixture
def jwks() -> Iterator[Jwks]:
    state = Jwks(url="")

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            if self.path != "/auth/v1/.well-known/jwks.json":
                self.reply(404, "application/json", b"{}")
                return
            state.fetches += 1
            self.reply(200, "application/json", state.document())

    with http_server(Handler) as base:
        state.url = base
        yield state


async def call(served_url: str, token: str | None = None, **headers: str) -> httpx.Response:
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(base_url=served_url) as client:
        return await client.get("/jobs", headers=headers)


def refused_because(reply: httpx.Response) -> tuple[str, str]:
    assert reply.status_code == 401, reply.text
    assert reply.headers["www-authenticate"].startswith("Bearer")
    error = reply.json()["error"]
    assert error["code"] == "unauthorized"
    return error["details"]["reason"], error["message"]


async def test_the_hs256_matrix(api_server: AppFactory) -> None:
    served = await api_server()
    url = served.url
    assert (await call(url, user_token())).status_code == 200

    assert refused_because(await call(url))[0] == "missing"
    assert refused_because(await call(url, Authorization="Basic dXNlcjpwdw=="))[0] == "scheme"
    assert refused_because(await call(url, "garbage"))[0] == "malformed"
    reason, message = refused_because(await call(url, user_token(exp=int(time.time()) - 3600)))
    assert reason == "expired"
    assert "refresh the session" in message
    wrong_key = jwt.encode(
        {"sub": DEMO_USER, "aud": "authenticated", "exp": int(time.time()) + 60},
        "another-secret-that-is-also-at-least-32-characters",
    )
    assert refused_because(await call(url, wrong_key))[0] == "signature"
    assert refused_because(await call(url, user_token(aud="anon")))[0] == "audience"
    assert refused_because(await call(url, user_token(sub=None)))[0] == "claims"
    assert refused_because(await call(url, user_token(exp=None)))[0] == "claims"
    unsigned = jwt.encode(
        {"sub": DEMO_USER, "aud": "authenticated"},
        None,  # type: ignore[arg-type]
        algorithm="none",
    )
    assert refused_because(await call(url, unsigned))[0] == "algorithm"
    # Within the leeway an just-expired token still passes (clock skew between machines).
    assert (await call(url, user_token(exp=int(time.time()) - 5))).status_code == 200


async def test_es256_and_rs256_through_the_projects_jwks(
    api_server: AppFactory, jwks: Jwks
) -> None:
    jwks.add_es256("key-1")
    jwks.add_rs256("key-rsa")
    served = await api_server(SUPABASE_URL=jwks.url, JOBHOOK_JWKS_REFETCH_COOLDOWN_SECONDS="0")
    assert (await call(served.url, jwks.token("key-1"))).status_code == 200
    assert (await call(served.url, jwks.token("key-rsa"))).status_code == 200
    # Cached: a second call does not fetch again.
    fetches = jwks.fetches
    assert (await call(served.url, jwks.token("key-1"))).status_code == 200
    assert jwks.fetches == fetches

    reason, _ = refused_because(await call(served.url, jwks.token("key-1", iss="https://evil")))
    assert reason == "issuer"
    reason, _ = refused_because(
        await call(served.url, jwks.token("key-1", exp=int(time.time()) - 3600))
    )
    assert reason == "expired"
    # HS256 tokens still work beside the JWKS (the legacy secret).
    assert (await call(served.url, user_token())).status_code == 200


async def test_key_rotation(api_server: AppFactory, jwks: Jwks) -> None:
    jwks.add_es256("old")
    served = await api_server(SUPABASE_URL=jwks.url, JOBHOOK_JWKS_REFETCH_COOLDOWN_SECONDS="0")
    old_token = jwks.token("old")
    assert (await call(served.url, old_token)).status_code == 200

    # The project rotates: a new key is published and the old one revoked.
    jwks.add_es256("new")
    assert (await call(served.url, jwks.token("new"))).status_code == 200
    del jwks.keys["old"]
    stranger = Jwks(url=jwks.url)
    stranger.add_es256("unknown")
    reason, message = refused_because(await call(served.url, stranger.token("unknown")))
    assert reason == "unknown_key"
    assert "not in the project's JWKS" in message


async def test_asymmetric_tokens_need_supabase_url(api_server: AppFactory, jwks: Jwks) -> None:
    jwks.add_es256("key-1")
    served = await api_server()
    reason, message = refused_because(await call(served.url, jwks.token("key-1")))
    assert reason == "no_jwks"
    assert "SUPABASE_URL" in message


async def test_an_unreachable_jwks_is_a_503_not_a_401(api_server: AppFactory, jwks: Jwks) -> None:
    jwks.add_es256("key-1")
    token = jwks.token("key-1")
    served = await api_server(SUPABASE_URL="http://127.0.0.1:9")
    reply = await call(served.url, token)
    assert reply.status_code == 503
    assert reply.json()["error"]["code"] == "jwks_unavailable"
