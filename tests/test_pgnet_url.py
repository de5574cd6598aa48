"""The pg_net stand-in checks and rewrites URLs as upstream does, held against libcurl itself.

Upstream's `net._encode_url_with_params_array` is C: it gives the URL to libcurl's
curl_url_set(CURLUPART_URL, url, 0), appends each parameter with CURLU_APPENDQUERY and reads the
URL back (supabase/pg_net v0.20.4 src/util.c:24-56); a URL libcurl refuses fails the statement
with 'invalid URL "<url>": <curl_url_strerror>' (src/errors.h:30-35). So a scheme-less webhook
URL makes `net.http_post` raise when it is called, inside the caller's transaction.
"""

from __future__ import annotations

import ctypes
import ctypes.util
from typing import Any

import psycopg
import pytest

Conn = psycopg.Connection[tuple[Any, ...]]

CURLUPART_URL = 0
CURLUPART_QUERY = 8
CURLU_APPENDQUERY = 1 << 8


class Curl:
    """libcurl's URL API through ctypes: the parser pg_net calls."""

    def __init__(self) -> None:
        name = ctypes.util.find_library("curl") or "libcurl.so.4"
        lib = ctypes.CDLL(name)
        lib.curl_url.restype = ctypes.c_void_p
        lib.curl_url_set.argtypes = [ctypes.c_void_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
        lib.curl_url_get.argtypes = [
            ctypes.c_void_p,
            ctypes.c_int,
            ctypes.POINTER(ctypes.c_char_p),
            ctypes.c_uint,
        ]
        lib.curl_url_strerror.restype = ctypes.c_char_p
        lib.curl_url_cleanup.argtypes = [ctypes.c_void_p]
        self.lib = lib

    def encode(self, url: str, params: list[str]) -> str:
        """The URL pg_net would queue, or the error it would raise, as text."""
        lib = self.lib
        handle = lib.curl_url()
        try:
            code = lib.curl_url_set(handle, CURLUPART_URL, url.encode(), 0)
            if code:
                return f'invalid URL "{url}": {lib.curl_url_strerror(code).decode()}'
            for param in params:
                code = lib.curl_url_set(handle, CURLUPART_QUERY, param.encode(), CURLU_APPENDQUERY)
                if code:
                    return f'invalid URL "{param}": {lib.curl_url_strerror(code).decode()}'
            out = ctypes.c_char_p()
            code = lib.curl_url_get(handle, CURLUPART_URL, ctypes.byref(out), 0)
            assert code == 0, code
            assert out.value is not None
            return out.value.decode()
        finally:
            lib.curl_url_cleanup(handle)


URLS = [
    # What a webhook URL in Vault may look like, right and wrong.
    "http://127.0.0.1:8000/webhooks/jobs",
    "https://app.example.com/webhooks/jobs",
    "app.example.com/webhooks/jobs",
    "127.0.0.1:8000/webhooks/jobs",
    "localhost:8000/webhooks/jobs",
    "//app.example.com/webhooks/jobs",
    "",
    " ",
    "http://",
    "http:///x",
    "http:/h/x",
    "http:h/x",
    "http:////h/x",
    "HTTP://Host/x",
    "http://h",
    "http://h:8080",
    "http://h:/x",
    "http://h:99999/x",
    "http://h:abc/x",
    "http://h/a b",
    "http://h/x?a b",
    "http://h/x#a b",
    "http://a b/",
    "http://h%20x/",
    "http://h\\x",
    "http://h\tx/",
    "http://[::1]:8/x",
    "http://[::1/x",
    "http://[zz]/x",
    "http://user:pw@h/x",
    "http://h/a/./b/../../c",
    "http://h/..",
    "http://h/x/",
    "http://h/x?k=1",
    "http://h/x?",
    "http://h?q",
    "http://h/x#f",
    "http://h/x?a=1#",
    "http://h/é?q=é",
    "ftp://h/x",
    "foo://h/x",
    "mailto:a@b",
]


@pytest.fixture(scope="module")
def curl() -> Curl:
    return Curl()


@pytest.mark.parametrize("params", [[], ["a=1", "b=%20"]], ids=["no params", "params"])
def test_urls_are_checked_and_rewritten_as_libcurl_does(
    db: Conn, curl: Curl, params: list[str]
) -> None:
    ours = []
    for url in URLS:
        db.execute("savepoint url")
        try:
            row = db.execute(
                "select net._encode_url_with_params_array(%s, %s)", (url, params)
            ).fetchone()
            assert row is not None
            ours.append(row[0])
        except psycopg.errors.InternalError as exc:
            ours.append(exc.diag.message_primary)
            db.execute("rollback to savepoint url")
    assert ours == [curl.encode(url, params) for url in URLS]


@pytest.mark.parametrize("function", ["http_get", "http_post", "http_delete"])
def test_a_scheme_less_url_raises_when_the_request_is_made(db: Conn, function: str) -> None:
    with pytest.raises(psycopg.errors.InternalError) as raised:
        db.execute(f"select net.{function}('app.example.com/webhooks/jobs')")
    assert raised.value.diag.message_primary == (
        'invalid URL "app.example.com/webhooks/jobs": Bad scheme'
    )
    assert raised.value.sqlstate == "XX000"  # ereport(ERROR) without an errcode


def test_urlencode_of_null_is_null_and_null_params_are_dropped(db: Conn) -> None:
    # src/util.c:12 returns NULL for NULL; the NULL element is then skipped (src/util.c:42).
    assert db.execute("select net._urlencode_string(null)").fetchone() == (None,)
    db.execute("""select net.http_get('http://h/x', '{"a": null, "b": "1"}')""")
    row = db.execute("select url from net.http_request_queue order by id desc limit 1").fetchone()
    assert row == ("http://h/x?b=1",)
