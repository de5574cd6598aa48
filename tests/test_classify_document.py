"""classify_document against a real HTTP server standing in for the web and Supabase Storage."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from handlers.classify_document import classify
from jobhook.stack import Served
from tests.conftest import QuietHandler, Stack, finished, http_server, insert_job, wait_for_job

pytestmark = pytest.mark.commits

SERVICE_KEY = "service-role-key-for-tests"
INVOICE = b"INVOICE 2041\nBill to: ACME\nTotal amount due: 120 EUR, VAT included.\nDue date: 1 May"
CONTRACT = b"This agreement between the parties hereby sets the terms; termination is governed..."


@pytest.fixture
def documents(monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    calls: dict[str, int] = {}

    class Handler(QuietHandler):
        def do_GET(self) -> None:
            calls[self.path] = calls.get(self.path, 0) + 1
            if self.path == "/invoice.txt":
                self.reply(200, "text/plain; charset=utf-8", INVOICE)
            elif self.path == "/flaky.txt" and calls[self.path] == 1:
                self.reply(503, "text/plain", b"try later")
            elif self.path == "/flaky.txt":
                self.reply(200, "text/plain", INVOICE)
            elif self.path == "/photo.png":
                self.reply(200, "image/png", b"\x89PNG....")
            elif self.path == "/huge.txt":
                self.send_response(200)
                self.send_header("Content-Type", "text/plain")
                self.send_header("Content-Length", str(50 * 1024 * 1024))
                self.end_headers()
            elif self.path == "/storage/v1/object/authenticated/docs/contract.txt":
                authorised = self.headers.get("Authorization") == f"Bearer {SERVICE_KEY}"
                self.reply(
                    200 if authorised else 400, "text/plain", CONTRACT if authorised else b"{}"
                )
            else:
                self.reply(404, "application/json", b'{"error": "not found"}')

    with http_server(Handler) as base:
        monkeypatch.setenv("SUPABASE_URL", base)
        monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY)
        yield base


async def run(committed: Stack, payload: dict[str, Any]) -> dict[str, Any]:
    job_id = insert_job(committed.url, "classify_document", payload)
    return await wait_for_job(committed.url, job_id, finished)


async def test_an_invoice_by_url(committed: Stack, app_stack: Served, documents: str) -> None:
    row = await run(committed, {"url": f"{documents}/invoice.txt"})
    assert row["status"] == "completed"
    assert row["result"]["label"] == "invoice"
    assert row["result"]["bytes"] == len(INVOICE)
    assert row["result"]["content_type"] == "text/plain"
    assert row["progress_message"] == "labelled invoice"


async def test_a_contract_from_storage(committed: Stack, app_stack: Served, documents: str) -> None:
    row = await run(committed, {"storage_path": "docs/contract.txt"})
    assert (row["status"], row["result"]["label"]) == ("completed", "contract")


async def test_a_5xx_is_retried(committed: Stack, app_stack: Served, documents: str) -> None:
    with psycopg.connect(committed.url, autocommit=True) as conn:
        conn.execute(
            "update jobhook.job_types set backoff_base_seconds = 0.05"
            " where name = 'classify_document'"
        )
    row = await run(committed, {"url": f"{documents}/flaky.txt"})
    assert (row["status"], row["attempt"]) == ("completed", 2)
    assert row["errors"][0]["message"] == "fetching the document failed: HTTP 503"


@pytest.mark.parametrize(
    ("path", "error"),
    [
        ("/missing.txt", "the document is not available: HTTP 404"),
        ("/photo.png", "cannot read image/png documents; send text"),
        ("/huge.txt", f"the document is {50 * 1024 * 1024} bytes, over {10 * 1024 * 1024}"),
    ],
)
async def test_what_can_never_work_fails_at_once(
    committed: Stack, app_stack: Served, documents: str, path: str, error: str
) -> None:
    row = await run(committed, {"url": f"{documents}{path}"})
    assert (row["status"], row["attempt"], row["error"]) == ("failed", 1, error)


async def test_parameters_need_exactly_one_source(committed: Stack, app_stack: Served) -> None:
    row = await run(committed, {"url": "http://x.example/a", "storage_path": "docs/a.txt"})
    assert row["status"] == "failed"
    assert "give exactly one of url and storage_path" in row["error"]


def test_classify_labels_by_keyword_density() -> None:
    assert classify("nothing to see here")[0] == "other"
    label, scores, words = classify(INVOICE.decode())
    assert label == "invoice"
    assert words == 16
    assert scores["invoice"] > scores["contract"]
