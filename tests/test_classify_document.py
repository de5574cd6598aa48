"""classify_document against real HTTP servers standing in for the web and Supabase Storage.

The servers listen on loopback, which the handler refuses by default; `public_loopback` widens
its address policy to 127.0.0.1 for the tests that need to reach them, and the tests without it
prove the default refuses them.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import psycopg
import pytest

from handlers import classify_document
from handlers.classify_document import classify
from jobhook import outbound
from tests.conftest import (
    DEMO_USER,
    QuietHandler,
    Stack,
    finished,
    http_server,
    insert_job,
    wait_for_job,
)

pytestmark = pytest.mark.commits

SERVICE_KEY = "service-role-key-for-tests"
OTHER_USER = "00000000-0000-4000-8000-0000000000b2"
INVOICE = b"INVOICE 2041\nBill to: ACME\nTotal amount due: 120 EUR, VAT included.\nDue date: 1 May"
CONTRACT = b"This agreement between the parties hereby sets the terms; termination is governed..."
# What an internal service might say in an error body; it must never reach the job's owner.
INTERNAL_BODY = b'{"error": "pq: connection to 10.0.3.7:5432 refused", "trace": "..."}'


@dataclass
class Documents:
    base: str
    requests: list[tuple[str, dict[str, str]]] = field(default_factory=list)

    @property
    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


@pytest.fixture
def documents(monkeypatch: pytest.MonkeyPatch) -> Iterator[Documents]:
    """The web and Storage in one server; Storage answers as supabase/storage-api does."""
    calls: dict[str, int] = {}
    state = Documents(base="")

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            state.requests.append((self.path, {k.lower(): v for k, v in self.headers.items()}))
            calls[self.path] = calls.get(self.path, 0) + 1
            if self.path == "/invoice.txt":
                self.reply(200, "text/plain; charset=utf-8", INVOICE)
            elif self.path == "/flaky.txt" and calls[self.path] == 1:
                self.reply(503, "text/plain", b"try later")
            elif self.path == "/flaky.txt":
                self.reply(200, "text/plain", INVOICE)
            elif self.path == "/broken.txt":
                self.reply(500, "application/json", INTERNAL_BODY)
            elif self.path == "/photo.png":
                self.reply(200, "image/png", b"\x89PNG....")
            elif self.path == "/huge.txt":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(50 * 1024 * 1024))
                self.end_headers()
            elif self.path == "/to-metadata":
                self.send_response(302)
                self.send_header("Location", "http://169.254.169.254/latest/meta-data/")
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif self.path.startswith("/storage/v1/object/documents/"):
                self.storage(self.path.removeprefix("/storage/v1/object/documents/"))
            else:
                self.reply(404, "application/json", b'{"error": "not found"}')

        def storage(self, key: str) -> None:
            if self.headers.get("Authorization") != f"Bearer {SERVICE_KEY}":
                self.reply(400, "application/json", b'{"statusCode":"403","error":"Unauthorized"}')
            elif key in (f"{DEMO_USER}/contract.txt", f"{OTHER_USER}/contract.txt"):
                self.reply(200, "text/plain", CONTRACT)
            elif key == f"{DEMO_USER}/broken.txt":
                self.reply(500, "application/json", INTERNAL_BODY)
            else:
                # Storage answers a missing object with HTTP 400 and the status in the body.
                body = b'{"statusCode":"404","error":"not_found","message":"Object not found"}'
                self.reply(400, "application/json", body)

    with http_server(Handler) as base:
        state.base = base
        monkeypatch.setenv("SUPABASE_URL", base)
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY)
        yield state


@pytest.fixture
def other_user(committed: Stack) -> str:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute(
            "insert into auth.users (id, email) values (%s, 'b@example.com')"
            " on conflict do nothing",
            (OTHER_USER,),
        )
    return OTHER_USER


@pytest.fixture
def public_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = outbound.AddressPolicy(also_allow=(ipaddress.ip_network("127.0.0.1/32"),))
    monkeypatch.setattr(classify_document, "ADDRESSES", policy)


async def run(committed: Stack, payload: dict[str, Any], **options: Any) -> dict[str, Any]:
    job_id = insert_job(committed.url, "classify_document", payload, **options)
    return await wait_for_job(committed.url, job_id, finished)


def failed_at_once(row: dict[str, Any]) -> str:
    assert (row["status"], row["attempt"], row["result"]) == ("failed", 1, None)
    message: str = row["error"]
    return message


@pytest.mark.usefixtures("app_stack", "public_loopback")
async def test_an_invoice_by_url(committed: Stack, documents: Documents) -> None:
    row = await run(committed, {"url": f"{documents.base}/invoice.txt"})
    assert row["status"] == "completed"
    assert row["result"]["label"] == "invoice"
    assert row["result"]["bytes"] == len(INVOICE)
    assert row["result"]["content_type"] == "text/plain"
    assert row["progress_message"] == "labelled invoice"
    # The service key is for Storage alone.
    [(_, headers)] = documents.requests
    assert "authorization" not in headers
    assert "apikey" not in headers


@pytest.mark.usefixtures("app_stack")
async def test_a_contract_from_the_owners_storage_folder(
    committed: Stack, documents: Documents
) -> None:
    row = await run(committed, {"storage_path": f"documents/{DEMO_USER}/contract.txt"})
    assert (row["status"], row["result"]["label"]) == ("completed", "contract")
    # storage3's download: GET /storage/v1/object/<bucket>/<name>, with the service key.
    [(path, headers)] = documents.requests
    assert path == f"/storage/v1/object/documents/{DEMO_USER}/contract.txt"
    assert headers["authorization"] == f"Bearer {SERVICE_KEY}"
    assert headers["apikey"] == SERVICE_KEY


@pytest.mark.usefixtures("app_stack")
async def test_a_loopback_url_is_refused_by_default(committed: Stack, documents: Documents) -> None:
    row = await run(committed, {"url": f"{documents.base}/invoice.txt"})
    assert failed_at_once(row) == "the URL's address is not allowed (loopback)"
    assert row["progress_message"] in (None, "fetching")  # no "fetched N bytes"
    assert documents.requests == []


@pytest.mark.usefixtures("app_stack")
@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("http://169.254.169.254/latest/", "the URL's address is not allowed (cloud metadata)"),
        ("http://metadata.google.internal/", "the URL's host is not allowed (cloud metadata)"),
        ("http://2130706433/", "the URL's address is not allowed (loopback)"),
        ("http://[::ffff:127.0.0.1]/", "the URL's address is not allowed (loopback)"),
        ("http://10.0.0.8/", "the URL's address is not allowed (private network)"),
    ],
)  # fmt: skip
async def test_internal_addresses_are_refused(committed: Stack, url: str, error: str) -> None:
    row = await run(committed, {"url": url})
    assert failed_at_once(row) == error


@pytest.mark.usefixtures("app_stack", "public_loopback")
async def test_a_redirect_to_metadata_is_refused(committed: Stack, documents: Documents) -> None:
    row = await run(committed, {"url": f"{documents.base}/to-metadata"})
    assert failed_at_once(row) == "a redirect's address is not allowed (cloud metadata)"
    assert documents.paths == ["/to-metadata"]


@pytest.mark.usefixtures("app_stack")
@pytest.mark.parametrize(
    "storage_path",
    [
        f"documents/{DEMO_USER}/../{OTHER_USER}/contract.txt",
        f"documents/{DEMO_USER}/%2e%2e/{OTHER_USER}/contract.txt",
        f"documents/{DEMO_USER}/%252e%252e/{OTHER_USER}/contract.txt",
        f"documents/{DEMO_USER}//contract.txt",
        f"documents/{DEMO_USER}/a\\..\\..\\{OTHER_USER}\\contract.txt",
        f"/documents/{DEMO_USER}/contract.txt",
        "documents/contract.txt",
    ],
)
async def test_a_storage_path_out_of_the_owners_folder_is_invalid(
    committed: Stack, documents: Documents, storage_path: str
) -> None:
    row = await run(committed, {"storage_path": storage_path})
    message = failed_at_once(row)
    assert message.startswith("invalid parameters: storage_path: ")
    assert documents.requests == []


@pytest.mark.usefixtures("app_stack", "other_user")
async def test_another_users_folder_is_refused(committed: Stack, documents: Documents) -> None:
    row = await run(committed, {"storage_path": f"documents/{OTHER_USER}/contract.txt"})
    assert failed_at_once(row) == (
        "storage_path must be in your own folder: <bucket>/<your user id>/<name>"
    )
    assert documents.requests == []
    # The owner reads the same file.
    row = await run(
        committed, {"storage_path": f"documents/{OTHER_USER}/contract.txt"}, user_id=OTHER_USER
    )
    assert row["status"] == "completed"


@pytest.mark.usefixtures("app_stack", "public_loopback")
async def test_a_5xx_is_retried(committed: Stack, documents: Documents) -> None:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute(
            "update jobhook.job_types set backoff_base_seconds = 0.05"
            " where name = 'classify_document'"
        )
    row = await run(committed, {"url": f"{documents.base}/flaky.txt"})
    assert (row["status"], row["attempt"]) == ("completed", 2)
    assert row["errors"][0]["message"] == "fetching the URL failed (HTTP 503)"


@pytest.mark.usefixtures("app_stack", "public_loopback")
@pytest.mark.parametrize(
    ("source", "error"),
    [
        ({"url": "/missing.txt"}, "the URL is not available (HTTP 404)"),
        ({"url": "/photo.png"}, "cannot read image/png documents; send text"),
        ({"url": "/huge.txt"}, f"the response is over the size limit ({10 * 1024 * 1024} bytes)"),
        (
            {"storage_path": f"documents/{DEMO_USER}/missing.txt"},
            "the file is not available in Storage",
        ),
    ],
)
async def test_what_can_never_work_fails_at_once(
    committed: Stack, documents: Documents, source: dict[str, str], error: str
) -> None:
    if "url" in source:
        source = {"url": documents.base + source["url"]}
    row = await run(committed, source)
    assert failed_at_once(row) == error


@pytest.mark.usefixtures("app_stack", "public_loopback")
@pytest.mark.parametrize(
    ("source", "error"),
    [
        ({"url": "/broken.txt"}, "fetching the URL failed (HTTP 500)"),
        (
            {"storage_path": f"documents/{DEMO_USER}/broken.txt"},
            "reading the file from Storage failed",
        ),
    ],
)
async def test_an_upstream_error_body_stays_in_the_logs(
    committed: Stack, documents: Documents, source: dict[str, str], error: str
) -> None:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute(
            "update jobhook.job_types set max_attempts = 1 where name = 'classify_document'"
        )
    if "url" in source:
        source = {"url": documents.base + source["url"]}
    row = await run(committed, source)
    assert (row["status"], row["error"], row["result"]) == ("failed", error, None)


@pytest.mark.usefixtures("app_stack", "public_loopback")
async def test_proxies_from_the_environment_are_not_used(
    committed: Stack, documents: Documents, monkeypatch: pytest.MonkeyPatch
) -> None:
    proxied: list[str] = []

    class Proxy(QuietHandler):
        def do_GET(self) -> None:
            proxied.append(self.path)
            self.reply(200, "text/plain", INVOICE)

    with http_server(Proxy) as proxy:
        for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        by_url = await run(committed, {"url": f"{documents.base}/invoice.txt"})
        from_storage = await run(committed, {"storage_path": f"documents/{DEMO_USER}/contract.txt"})
    assert (by_url["status"], from_storage["status"]) == ("completed", "completed")
    assert proxied == []
    assert documents.paths == [
        "/invoice.txt",
        f"/storage/v1/object/documents/{DEMO_USER}/contract.txt",
    ]


@pytest.mark.usefixtures("app_stack")
async def test_parameters_need_exactly_one_source(committed: Stack) -> None:
    row = await run(
        committed, {"url": "http://x.example/a", "storage_path": f"documents/{DEMO_USER}/a.txt"}
    )
    assert row["status"] == "failed"
    assert "give exactly one of url and storage_path" in row["error"]


def test_classify_labels_by_keyword_density() -> None:
    assert classify("nothing to see here")[0] == "other"
    label, scores, words = classify(INVOICE.decode())
    assert label == "invoice"
    assert words == 16
    assert scores["invoice"] > scores["contract"]
