"""/docs and /redoc work offline: every file their pages load is served by the app itself."""

from __future__ import annotations

import re
from html.parser import HTMLParser
from urllib.parse import urlsplit

import httpx
import pytest

from jobhook.devstack.stack import Served

pytestmark = pytest.mark.commits

# The asset each page cannot render without, and what it must be served as.
EXPECTED = {
    "/docs": {"swagger-ui-bundle.js": "javascript", "swagger-ui.css": "text/css"},
    "/redoc": {"redoc.standalone.js": "javascript"},
}


class _References(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.urls += [value for name, value in attrs if name in ("src", "href") and value]


def references(page: str) -> list[str]:
    """Every URL the page loads: src and href attributes, and the schema URL in its script."""
    parser = _References()
    parser.feed(page)
    scripted = re.findall(r"""(?:url|spec-url)\s*[:=]\s*['"]([^'"]+)['"]""", page)
    return parser.urls + scripted


@pytest.mark.parametrize("page", sorted(EXPECTED))
async def test_the_docs_pages_load_only_what_the_app_serves(app_stack: Served, page: str) -> None:
    async with httpx.AsyncClient(base_url=app_stack.url) as http:
        reply = await http.get(page)
        assert reply.status_code == 200
        urls = references(reply.text)
        assert "/openapi.json" in urls
        foreign = [url for url in urls if urlsplit(url).scheme or urlsplit(url).netloc]
        assert foreign == [], f"{page} loads from elsewhere: {foreign}"
        for name in EXPECTED[page]:
            assert any(url.endswith("/" + name) for url in urls), f"{page} does not load {name}"
        for url in urls:
            asset = await http.get(url)
            assert asset.status_code == 200, url
            assert asset.content, url
            for name, content_type in EXPECTED[page].items():
                if url.endswith("/" + name):
                    assert content_type in asset.headers["content-type"], url
