"""classify_document: real work in the handler pattern — fetch a document, read it, label it.

The document comes from a URL or from Supabase Storage (`storage_path` = "<bucket>/<path>", read
with the service role key, as a backend reads private files). Failures are sorted the way a
runner needs them: a missing or oversized document can never succeed (PermanentJobError, no
retry); a timeout or a 5xx may succeed later (JobError, retried with backoff).
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import Counter
from typing import Any, Self

import httpx
from pydantic import BaseModel, Field, HttpUrl, model_validator

from jobhook import JobContext, JobError, PermanentJobError, job

MAX_BYTES = 10 * 1024 * 1024
TEXT_TYPES = ("text/", "application/json", "application/xml")

# Words that mark each kind of document; the label is the kind with the most hits per word.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "invoice": ("invoice", "amount due", "total", "vat", "payment", "bill to", "due date"),
    "contract": ("agreement", "party", "parties", "hereby", "terms", "termination", "governed"),
    "resume": ("experience", "education", "skills", "curriculum", "employment", "references"),
    "report": ("summary", "findings", "results", "analysis", "conclusion", "figure"),
}


class ClassifyParams(BaseModel):
    url: HttpUrl | None = Field(None, description="fetch the document from this URL")
    storage_path: str | None = Field(
        None,
        pattern=r"^[a-z0-9][a-z0-9._-]*/.+$",
        description="or from Supabase Storage: <bucket>/<path>",
    )

    @model_validator(mode="after")
    def _one_source(self) -> Self:
        if (self.url is None) == (self.storage_path is None):
            raise ValueError("give exactly one of url and storage_path")
        return self


@job(timeout_seconds=120, max_attempts=4, backoff_base_seconds=5)
async def classify_document(params: ClassifyParams, ctx: JobContext) -> dict[str, Any]:
    """Fetch a document by URL or Storage path and label it: invoice, contract, resume, report."""
    await ctx.progress(5, "fetching")
    body, content_type = await fetch(params)
    await ctx.progress(50, f"fetched {len(body)} bytes")
    if not content_type.startswith(TEXT_TYPES):
        raise PermanentJobError(f"cannot read {content_type} documents; send text")
    text = body.decode("utf-8", errors="replace")
    label, scores, words = classify(text)
    await ctx.progress(100, f"labelled {label}")
    return {
        "label": label,
        "scores": scores,
        "words": words,
        "bytes": len(body),
        "content_type": content_type,
        "sha256": hashlib.sha256(body).hexdigest(),
    }


async def fetch(params: ClassifyParams) -> tuple[bytes, str]:
    url, headers = source(params)
    try:
        async with (
            httpx.AsyncClient(timeout=30, follow_redirects=True) as client,
            client.stream("GET", url, headers=headers) as reply,
        ):
            if reply.status_code in (401, 403, 404, 410):
                raise PermanentJobError(f"the document is not available: HTTP {reply.status_code}")
            if reply.status_code >= 400:
                raise JobError(f"fetching the document failed: HTTP {reply.status_code}")
            declared = reply.headers.get("content-length")
            if declared and declared.isdigit() and int(declared) > MAX_BYTES:
                raise PermanentJobError(f"the document is {declared} bytes, over {MAX_BYTES}")
            body = bytearray()
            async for chunk in reply.aiter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise PermanentJobError(f"the document is over {MAX_BYTES} bytes")
            content_type = reply.headers.get("content-type", "application/octet-stream")
            return bytes(body), content_type.split(";")[0].strip().lower()
    except httpx.TimeoutException as exc:
        raise JobError(f"fetching the document timed out: {exc}") from exc
    except httpx.TransportError as exc:
        raise JobError(f"fetching the document failed: {exc}") from exc


def source(params: ClassifyParams) -> tuple[str, dict[str, str]]:
    if params.url is not None:
        return str(params.url), {}
    supabase_url = os.environ.get("SUPABASE_URL")
    key = os.environ.get("SUPABASE_SERVICE_ROLE_KEY")
    if not supabase_url or not key:
        raise PermanentJobError(
            "storage_path needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY in the runner's "
            "environment (the Modal secret)"
        )
    # Supabase Storage's API for a private object:
    # GET /storage/v1/object/authenticated/<bucket>/<path>
    url = f"{supabase_url.rstrip('/')}/storage/v1/object/authenticated/{params.storage_path}"
    return url, {"Authorization": f"Bearer {key}", "apikey": key}


def classify(text: str) -> tuple[str, dict[str, float], int]:
    lowered = text.lower()
    words = len(re.findall(r"\w+", lowered))
    hits = Counter(
        {kind: sum(lowered.count(term) for term in terms) for kind, terms in KEYWORDS.items()}
    )
    scores = {kind: round(count / max(words, 1), 4) for kind, count in hits.items()}
    label, top = hits.most_common(1)[0]
    return (label if top else "other"), scores, words
