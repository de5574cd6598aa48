"""classify_document: real work in the handler pattern — fetch a document, read it, label it.

The document comes from one of two places, both named by the job's owner and both read through
`jobhook.outbound`, which keeps a user from steering the runner anywhere else:

- `url`: an http(s) URL on a public address. Loopback, private, link-local and metadata addresses
  are refused in any spelling, and so is a redirect to one.
- `storage_path`: `documents/<user id>/<name>`, a file in the owner's own folder of the
  `documents` bucket, the folder convention of Storage's RLS examples. It is read with the
  service role key, so the user id must be the job owner's and the bucket `documents`: another
  user's folder, another bucket, `..`, `.`, empty segments, backslashes and percent-encoding are
  refused.

Failures are sorted the way a runner needs them: a refused, missing or oversized document can
never succeed (PermanentJobError, no retry); a timeout or a 5xx may succeed later (JobError,
retried with backoff). Every message is written for the job's owner; what the runner saw (the
address a name resolved to, the server's answer) goes to the log.
"""

from __future__ import annotations

import hashlib
import re
from collections import Counter
from typing import Any, Self

from pydantic import BaseModel, Field, HttpUrl, model_validator

from jobhook import JobContext, PermanentJobError, job, outbound

MAX_BYTES = 10 * 1024 * 1024
LIMITS = outbound.Limits(max_bytes=MAX_BYTES, total_seconds=60)
# Which addresses `url` may reach. Public only; the tests widen it to reach their own servers.
ADDRESSES = outbound.PUBLIC_ONLY
TEXT_TYPES = ("text/", "application/json", "application/xml")
# The Storage buckets it reads, laid out by the owner's folder; any other is refused.
BUCKETS = frozenset({"documents"})

# Words that mark each kind of document; the label is the kind with the most hits per word.
KEYWORDS: dict[str, tuple[str, ...]] = {
    "invoice": ("invoice", "amount due", "total", "vat", "payment", "bill to", "due date"),
    "contract": ("agreement", "party", "parties", "hereby", "terms", "termination", "governed"),
    "resume": ("experience", "education", "skills", "curriculum", "employment", "references"),
    "report": ("summary", "findings", "results", "analysis", "conclusion", "figure"),
}


class ClassifyParams(BaseModel):
    url: HttpUrl | None = Field(None, description="fetch the document from this public URL")
    storage_path: outbound.StoragePath | None = Field(
        None, description="or from Supabase Storage: <bucket>/<your user id>/<name>"
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
    if params.url is not None:
        document = await outbound.fetch(
            str(params.url), policy=ADDRESSES, limits=LIMITS, log=ctx.log
        )
    else:
        assert params.storage_path is not None
        storage = outbound.Storage.from_env(BUCKETS, LIMITS)
        document = await storage.read(params.storage_path, ctx.user_id, log=ctx.log)
    await ctx.progress(50, f"fetched {len(document.body)} bytes")
    if not document.content_type.startswith(TEXT_TYPES):
        raise PermanentJobError(f"cannot read {document.content_type} documents; send text")
    text = document.body.decode("utf-8", errors="replace")
    label, scores, words = classify(text)
    await ctx.progress(100, f"labelled {label}")
    return {
        "label": label,
        "scores": scores,
        "words": words,
        "bytes": len(document.body),
        "content_type": document.content_type,
        "sha256": hashlib.sha256(document.body).hexdigest(),
    }


def classify(text: str) -> tuple[str, dict[str, float], int]:
    lowered = text.lower()
    words = len(re.findall(r"\w+", lowered))
    hits = Counter(
        {kind: sum(lowered.count(term) for term in terms) for kind, terms in KEYWORDS.items()}
    )
    scores = {kind: round(count / max(words, 1), 4) for kind, count in hits.items()}
    label, top = hits.most_common(1)[0]
    return (label if top else "other"), scores, words
