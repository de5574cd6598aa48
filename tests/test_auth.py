"""The auth matrix: every way a token can be wrong gets a 401 that says which.

Asymmetric tokens are checked against a JWKS served by a real HTTP server on loopback, shaped
like Supabase Auth's /auth/v1/.well-known/jwks.json, whose keys the tests rotate.
"""

from __future__ import annotations

import base64
import hmac
import json
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from jobhook.config import LOCAL_ISSUER, LOCAL_JWT_SECRET, Settings
from jobhook.devstack.tokens import user_token as local_token
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
    # HS256 tokens still work beside the JWKS (the legacy secret), from the same issuer.
    assert (await call(served.url, user_token(iss=f"{jwks.url}/auth/v1"))).status_code == 200
    reason, message = refused_because(await call(served.url, user_token()))
    assert reason == "issuer"
    assert f"{jwks.url}/auth/v1" in message


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


# -- no secret of the app's own; the public local secret stays local ---------------------------


PROJECT = "https://abcdefghijklmnop.supabase.co"
PROJECT_DATABASE = "postgresql://postgres.abc:pw@aws-0-eu-west-1.pooler.supabase.com:6543/postgres"


def settings_from(**environment: Any) -> Settings:
    """Settings from exactly this environment: no .env file, no variable of the shell."""
    return Settings(_env_file=None, **environment)


def test_the_app_has_no_hs256_secret_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("SUPABASE_JWT_SECRET", "SUPABASE_URL"):
        monkeypatch.delenv(name, raising=False)
    assert settings_from().supabase_jwt_secret is None
    assert settings_from(SUPABASE_JWT_SECRET="").supabase_jwt_secret is None


@pytest.mark.parametrize(
    ("environment", "named"),
    [
        ({"SUPABASE_URL": PROJECT, "SUPABASE_JWT_SECRET": LOCAL_JWT_SECRET}, "SUPABASE_URL"),
        (
            {"DATABASE_URL": PROJECT_DATABASE, "SUPABASE_JWT_SECRET": LOCAL_JWT_SECRET},
            "DATABASE_URL",
        ),
        (
            {"SUPABASE_URL": "http://10.0.0.8:54321", "SUPABASE_JWT_SECRET": LOCAL_JWT_SECRET},
            "SUPABASE_URL",
        ),
    ],
)
def test_the_published_local_secret_is_refused_beside_anything_remote(
    environment: dict[str, str], named: str
) -> None:
    with pytest.raises(ValidationError) as refused:
        settings_from(**environment)
    message = str(refused.value)
    assert "published local secret" in message
    assert named in message


def test_the_local_secret_is_accepted_on_loopback_only() -> None:
    for url in ("http://127.0.0.1:54321", "http://localhost:54321", "http://[::1]:54321"):
        settings = settings_from(SUPABASE_URL=url, SUPABASE_JWT_SECRET=LOCAL_JWT_SECRET)
        assert settings.token_issuer == f"{url}/auth/v1"
    assert settings_from(SUPABASE_JWT_SECRET=LOCAL_JWT_SECRET).token_issuer == LOCAL_ISSUER


def test_a_short_secret_or_one_without_its_project_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"is 12 characters.*at least 32"):
        settings_from(SUPABASE_URL=PROJECT, SUPABASE_JWT_SECRET="too-short-12")
    with pytest.raises(ValidationError, match="SUPABASE_JWT_SECRET needs SUPABASE_URL"):
        settings_from(SUPABASE_JWT_SECRET="p" * 40)
    assert settings_from(SUPABASE_URL=PROJECT, SUPABASE_JWT_SECRET="p" * 40).token_issuer == (
        f"{PROJECT}/auth/v1"
    )


async def test_without_jwks_or_secret_user_requests_are_a_503_that_says_what_to_set(
    api_server: AppFactory,
) -> None:
    served = await api_server(SUPABASE_JWT_SECRET="")
    for token in (user_token(), None):
        reply = await call(served.url, token)
        assert reply.status_code == 503, reply.text
        error = reply.json()["error"]
        assert error["code"] == "auth_not_configured"
        assert "SUPABASE_URL" in error["message"]
        assert "SUPABASE_JWT_SECRET" in error["message"]
    async with httpx.AsyncClient(base_url=served.url) as client:
        ready = await client.get("/ready")
    assert ready.status_code == 503
    assert "SUPABASE_URL" in ready.json()["reason"]


async def test_the_dev_stack_accepts_what_jobhook_token_prints(api_server: AppFactory) -> None:
    served = await api_server()
    assert (await call(served.url, local_token(DEMO_USER))).status_code == 200


async def test_hs256_is_refused_without_a_secret(api_server: AppFactory, jwks: Jwks) -> None:
    jwks.add_es256("key-1")
    served = await api_server(SUPABASE_URL=jwks.url, SUPABASE_JWT_SECRET="")
    assert (await call(served.url, jwks.token("key-1"))).status_code == 200
    reason, message = refused_because(await call(served.url, user_token(iss=f"{jwks.url}/auth/v1")))
    assert reason == "no_secret"
    assert "SUPABASE_JWT_SECRET" in message


async def test_hs256_tokens_are_held_to_issuer_audience_and_role(api_server: AppFactory) -> None:
    url = (await api_server()).url
    now = int(time.time())
    # The anon and service_role keys are signed with the same secret, like users' tokens.
    for role in ("anon", "service_role"):
        key = jwt.encode(
            {"iss": "supabase-demo", "role": role, "exp": now + 600, "iat": now},
            LOCAL_JWT_SECRET,
        )
        reason, message = refused_because(await call(url, key))
        assert (reason, role in message) == ("role", True)
    for role in ("service_role", "anon", "postgres", "supabase_admin", "Authenticated", ""):
        reason, message = refused_because(await call(url, user_token(role=role)))
        assert reason == "role", role
        assert "'authenticated'" in message
    assert refused_because(await call(url, user_token(role=None)))[0] == "claims"
    reason, message = refused_because(await call(url, user_token(iss="supabase-demo")))
    assert reason == "issuer"
    assert LOCAL_ISSUER in message
    assert refused_because(await call(url, user_token(iss=None)))[0] == "claims"
    assert refused_because(await call(url, user_token(aud=None)))[0] == "claims"
    assert refused_because(await call(url, user_token(aud=["anon"])))[0] == "audience"
    assert (await call(url, user_token(aud=["authenticated"]))).status_code == 200


# -- garbage claims: each a 401 naming the claim, never a 5xx -----------------------------------

UUID_TEXT = DEMO_USER
NOT_A_NUMERIC_DATE: list[Any] = [
    -(10**20),
    10**30,
    2**63,
    -1,
    "soon",
    "9999999999",
    "",
    True,
    False,
    float("inf"),
    float("-inf"),
    float("nan"),
    1e300,
    [],
    [1],
    {},
    {"seconds": 1},
]
GARBAGE: dict[str, list[Any]] = {
    "sub": [
        12345,
        0,
        [UUID_TEXT],
        "",
        "not-a-uuid",
        "x" * 10_240,
        UUID_TEXT.replace("-", ""),
        "{" + UUID_TEXT + "}",
        "urn:uuid:" + UUID_TEXT,
        UUID_TEXT + "\x00",
        True,
        {"id": UUID_TEXT},
        1.5,
    ],
    "exp": NOT_A_NUMERIC_DATE,
    "iat": NOT_A_NUMERIC_DATE,
    "nbf": NOT_A_NUMERIC_DATE,
    "role": [123, ["authenticated"], {"role": "authenticated"}, True, "x" * 10_240],
    "aud": [123, [], [123], {"aud": "authenticated"}, True, "", "x" * 10_240],
    "iss": [123, ["http://127.0.0.1:54321/auth/v1"], True, "", "x" * 10_240],
}


def hs256(claims: dict[str, Any]) -> str:
    """Sign any claims, as an attacker holding the key could: PyJWT's encode refuses some
    shapes (a non-string iss) that a token can still carry."""

    def part(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    header = part(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    # json.dumps writes Infinity and NaN, which Python's JSON parser (PyJWT's) reads back.
    signing_input = header + b"." + part(json.dumps(claims).encode())
    signature = hmac.digest(LOCAL_JWT_SECRET.encode(), signing_input, "sha256")
    return (signing_input + b"." + part(signature)).decode()


def garbage_values(seed: int, count: int) -> list[Any]:
    """JSON values of every shape, reproducibly: nested lists and objects, numbers of every
    size and sign, strings of every length."""
    rng = random.Random(seed)  # noqa: S311 (reproducible test data, not a secret)

    def value(depth: int) -> Any:
        kind = rng.randrange(8 if depth < 3 else 6)
        if kind == 0:
            return rng.choice([None, True, False])
        if kind == 1:
            return rng.randint(-(10 ** rng.randint(0, 40)), 10 ** rng.randint(0, 40))
        if kind == 2:
            return rng.uniform(-1e12, 1e12) * 10 ** rng.randint(-10, 290)
        if kind == 3:
            return "".join(chr(rng.randint(32, 0x2FFF)) for _ in range(rng.randint(0, 80)))
        if kind == 4:
            return str(rng.randint(0, 10**12))
        if kind == 5:
            return "x" * rng.choice([0, 1, 36, 1000, 20_000])
        if kind == 6:
            return [value(depth + 1) for _ in range(rng.randint(0, 4))]
        return {f"k{i}": value(depth + 1) for i in range(rng.randint(0, 4))}

    return [value(0) for _ in range(count)]


# The reason each claim's garbage is refused for; "claims" messages also quote the claim's name.
REASON = {
    "sub": "claims",
    "exp": "claims",
    "iat": "claims",
    "nbf": "claims",
    "role": "role",
    "aud": "audience",
    "iss": "issuer",
}


async def test_garbage_claims_are_401s_naming_the_claim(api_server: AppFactory) -> None:
    url = (await api_server()).url
    valid: dict[str, Any] = jwt.decode(user_token(), options={"verify_signature": False})
    wrong: list[str] = []
    async with httpx.AsyncClient(base_url=url) as client:

        async def reply_to(claim: str, value: Any) -> httpx.Response:
            token = hs256({**valid, claim: value})
            return await client.get("/jobs", headers={"Authorization": f"Bearer {token}"})

        for claim, values in GARBAGE.items():
            for value in values:
                reply = await reply_to(claim, value)
                body = reply.json()
                expected = reply.status_code == 401 and set(body) == {"error", "request_id"}
                if expected:
                    error = body["error"]
                    expected = error["details"]["reason"] == REASON[claim] and (
                        REASON[claim] != "claims" or f"'{claim}'" in error["message"]
                    )
                if not expected:
                    wrong.append(f"{claim}={value!r:.60}: {reply.status_code} {reply.text:.300}")
        # Beyond the named shapes, many more, generated: a valid value may pass, nothing may fail
        # in any other way than a 401.
        for claim in REASON:
            for value in garbage_values(seed=sorted(REASON).index(claim), count=60):
                reply = await reply_to(claim, value)
                if reply.status_code not in (200, 401):
                    wrong.append(f"{claim}={value!r:.60}: {reply.status_code} {reply.text:.300}")
    assert not wrong, "\n".join(wrong)
