"""jobhook.outbound against real servers on loopback, real DNS for localhost, real TLS.

Loopback is what the default policy refuses, so the tests that must reach a server widen the
policy to 127.0.0.1 (`LOOPBACK`) and nothing else; the rest prove the default refuses it. A stub
resolver stands in for DNS where a test needs a name to resolve to a given address.
"""

from __future__ import annotations

import contextlib
import datetime
import ipaddress
import socket
import ssl
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from pydantic import BaseModel, ValidationError

from jobhook import PermanentJobError, outbound
from jobhook.outbound import Address, AddressPolicy, Failed, Limits, Refused, Unavailable
from tests.conftest import QuietHandler, http_server

LOOPBACK = AddressPolicy(also_allow=(ipaddress.ip_network("127.0.0.1/32"),))
OWNER = UUID("00000000-0000-4000-8000-00000000d3e0")
OTHER = UUID("00000000-0000-4000-8000-0000000000b2")
SERVICE_KEY = "service-role-key-for-tests"
SECRET = b"what only the runner's network can see"
INTERNAL_BODY = b'{"error": "pq: connection to 10.0.3.7:5432 refused"}'


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


@dataclass
class Server:
    url: str
    seen: list[Seen] = field(default_factory=list)

    @property
    def port(self) -> int:
        return int(self.url.rsplit(":", 1)[1])


Answer = Callable[[QuietHandler], None]


def handler_class(seen: list[Seen], answer: Answer) -> type[QuietHandler]:
    class Handler(QuietHandler):
        def do_GET(self) -> None:
            seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}))
            answer(self)

    return Handler


@contextlib.contextmanager
def serving(answer: Answer) -> Iterator[Server]:
    seen: list[Seen] = []
    with http_server(handler_class(seen, answer)) as url:
        yield Server(url, seen)


def redirect(handler: QuietHandler, location: str, status: int = 302) -> None:
    handler.send_response(status)
    handler.send_header("Location", location)
    handler.send_header("Content-Length", "0")
    handler.end_headers()


def site(handler: QuietHandler) -> None:
    """A small web site: the paths the tests ask for."""
    path = handler.path
    if path == "/doc":
        handler.reply(200, "text/plain; charset=utf-8", SECRET)
    elif path == "/moved":
        redirect(handler, "/doc", 301)
    elif path == "/loop":
        redirect(handler, "/loop")
    elif path.startswith("/to?"):
        redirect(handler, path.removeprefix("/to?"))
    elif path == "/declared-big":
        handler.reply(200, "text/plain", b"x" * 2000)
    elif path == "/streamed-big":
        # HTTP/1.0 without Content-Length: the body runs until the connection closes.
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.end_headers()
        handler.wfile.write(b"x" * 5000)
    elif path == "/gzip":
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.send_header("Content-Encoding", "gzip")
        handler.send_header("Content-Length", "10")
        handler.end_headers()
        handler.wfile.write(b"\x1f\x8b" + b"\x00" * 8)
    elif path == "/broken":
        handler.reply(500, "application/json", INTERNAL_BODY)
    else:
        handler.reply(404, "application/json", b'{"error": "not found"}')


# One server for the module: stopping one takes up to half a second (serve_forever's poll).
@pytest.fixture(scope="module")
def site_server() -> Iterator[Server]:
    with serving(site) as server:
        yield server


@pytest.fixture
def web(site_server: Server) -> Server:
    site_server.seen.clear()
    return site_server


@dataclass
class Log:
    """Stands in for `ctx.log`: what would be written for the operators."""

    lines: list[dict[str, Any]] = field(default_factory=list)

    def warning(self, event: str, **detail: Any) -> None:
        self.lines.append({"event": event, **detail})


class Resolver:
    """Answers each name with the next of `answers`, and records what it was asked."""

    def __init__(self, *answers: Sequence[str]) -> None:
        self.answers = [[ipaddress.ip_address(a) for a in answer] for answer in answers]
        self.asked: list[tuple[str, int]] = []

    async def __call__(self, host: str, port: int) -> Sequence[Address]:
        self.asked.append((host, port))
        return self.answers[min(len(self.asked), len(self.answers)) - 1]


# -- what is refused ---------------------------------------------------------------------------


def address(reason: str) -> str:
    return f"the URL's address is not allowed ({reason})"


def host(reason: str) -> str:
    return f"the URL's host is not allowed ({reason})"


LOOPBACK_REFUSED = address("loopback")
REFUSED_URLS = [
    # the schemes
    ("ftp://127.0.0.1:{port}/doc", "only http and https URLs can be fetched"),
    ("file:///etc/passwd", "only http and https URLs can be fetched"),
    ("gopher://127.0.0.1:{port}/_GET", "only http and https URLs can be fetched"),
    # loopback in every spelling
    ("http://127.0.0.1:{port}/doc", LOOPBACK_REFUSED),
    ("http://127.0.0.2:{port}/doc", LOOPBACK_REFUSED),
    ("http://127.1:{port}/doc", LOOPBACK_REFUSED),
    ("http://2130706433:{port}/doc", LOOPBACK_REFUSED),
    ("http://0x7f.1:{port}/doc", LOOPBACK_REFUSED),
    ("http://0x7f000001:{port}/doc", LOOPBACK_REFUSED),
    ("http://0177.0.0.01:{port}/doc", "the URL is not valid"),
    ("http://0177.1:{port}/doc", LOOPBACK_REFUSED),
    ("http://127.0.0.1.:{port}/doc", LOOPBACK_REFUSED),
    ("http://127.0.0.%31:{port}/doc", LOOPBACK_REFUSED),
    ("http://[::1]:{port}/doc", LOOPBACK_REFUSED),
    ("http://[0:0:0:0:0:0:0:1]:{port}/doc", LOOPBACK_REFUSED),
    ("http://[::ffff:127.0.0.1]:{port}/doc", LOOPBACK_REFUSED),
    ("http://[::ffff:7f00:1]:{port}/doc", LOOPBACK_REFUSED),
    ("http://[::127.0.0.1]:{port}/doc", LOOPBACK_REFUSED),
    ("http://[::ffff:0:127.0.0.1]:{port}/doc", LOOPBACK_REFUSED),
    ("http://[64:ff9b::127.0.0.1]:{port}/doc", LOOPBACK_REFUSED),
    ("http://[2002:7f00:1::]:{port}/doc", LOOPBACK_REFUSED),
    ("http://localhost:{port}/doc", host("loopback")),
    ("http://LocalHost.:{port}/doc", host("loopback")),
    ("http://app.localhost:{port}/doc", host("loopback")),
    ("http://evil@127.0.0.1:{port}/doc", "URLs with a user name or password are not allowed"),
    ("http://user:pw@example.com/", "URLs with a user name or password are not allowed"),
    # unspecified: 0.0.0.0 and :: reach the local host on Linux
    ("http://0.0.0.0:{port}/doc", address("unspecified")),
    ("http://0:{port}/doc", address("unspecified")),
    ("http://[::]:{port}/doc", address("unspecified")),
    # cloud metadata
    ("http://169.254.169.254/latest/meta-data/", address("cloud metadata")),
    ("http://2852039166/latest/meta-data/", address("cloud metadata")),
    ("http://0xa9.0xfe.0xa9.0xfe/", address("cloud metadata")),
    ("http://[::ffff:169.254.169.254]/", address("cloud metadata")),
    ("http://[64:ff9b::a9fe:a9fe]/", address("cloud metadata")),
    ("http://[fd00:ec2::254]/latest/meta-data/", address("cloud metadata")),
    ("http://169.254.170.2/v2/credentials", address("cloud metadata")),
    ("http://metadata.google.internal/computeMetadata/v1/", host("cloud metadata")),
    ("http://metadata.google.internal./computeMetadata/v1/", host("cloud metadata")),
    ("http://metadata/computeMetadata/v1/", host("cloud metadata")),
    # private networks
    ("http://10.0.0.1/", address("private network")),
    ("http://172.16.5.4/", address("private network")),
    ("http://172.31.255.255/", address("private network")),
    ("http://192.168.1.1/", address("private network")),
    ("http://100.64.0.1/", address("private network")),
    ("http://[fc00::1]/", address("private network")),
    ("http://[fd12:3456:789a::1]/", address("private network")),
    ("http://[::ffff:10.0.0.1]/", address("private network")),
    ("http://[2002:a00:1::]/", address("private network")),
    ("http://[64:ff9b:1::a00:1]/", address("private network")),
    ("http://db.internal/", host("internal host name")),
    ("http://printer.local/", host("internal host name")),
    ("http://db/", host("internal host name")),
    # link-local
    ("http://169.254.1.1/", address("link-local")),
    ("http://[fe80::1]/", address("link-local")),
    ("http://[fe80::1%25eth0]/", address("link-local")),
    # multicast, broadcast, reserved
    ("http://224.0.0.1/", address("multicast")),
    ("http://[ff02::1]/", address("multicast")),
    ("http://255.255.255.255/", address("broadcast")),
    ("http://4294967295/", address("broadcast")),
    ("http://240.0.0.1/", address("reserved")),
    ("http://192.0.2.1/", address("reserved")),
    ("http://[2001:db8::1]/", address("reserved")),
    # numbers that are no address are not left to a resolver to interpret
    ("http://1.2.3.4.5/", "the URL's host is not a valid address"),
    ("http://4294967296/", "the URL's host is not a valid address"),
    ("http://08.0.0.1/", "the URL is not valid"),
    ("http://docs.loc%61lhost:{port}/doc", "the URL's host is not valid"),
]  # fmt: skip


@pytest.mark.parametrize(("url", "error"), REFUSED_URLS)
async def test_refused_urls(web: Server, url: str, error: str) -> None:
    resolver = Resolver(["127.0.0.1"])
    log = Log()
    with pytest.raises(Refused) as refused:
        await outbound.fetch(url.format(port=web.port), resolver=resolver, log=log)
    assert str(refused.value) == error
    assert web.seen == []
    assert resolver.asked == []  # refused on the URL alone, before any DNS query
    assert log.lines[0]["error"] == str(refused.value)


@pytest.mark.parametrize(
    ("answer", "reason"),
    [
        (["10.1.2.3"], "private network"),
        (["93.184.215.14", "10.1.2.3"], "private network"),
        (["2606:2800:21f:cb07:6820:80da:af6b:8b2c", "::1"], "loopback"),
        (["169.254.169.254"], "cloud metadata"),
    ],
)
async def test_a_name_that_resolves_inside_is_refused_without_saying_where(
    answer: list[str], reason: str
) -> None:
    resolver = Resolver(answer)
    log = Log()
    with pytest.raises(Refused) as refused:
        await outbound.fetch("https://docs.example/a.txt", resolver=resolver, log=log)
    assert str(refused.value) == f"the URL's address is not allowed ({reason})"
    assert not any(address in str(refused.value) for address in answer)
    assert resolver.asked == [("docs.example", 443)]
    # Which address it was is for the operators.
    assert log.lines[0]["address"] in answer


async def test_the_default_policy_refuses_what_a_wider_one_allows(web: Server) -> None:
    with pytest.raises(Refused, match=r"\(loopback\)"):
        await outbound.fetch(f"{web.url}/doc")
    fetched = await outbound.fetch(f"{web.url}/doc", policy=LOOPBACK)
    assert (fetched.body, fetched.content_type) == (SECRET, "text/plain")
    assert [seen.path for seen in web.seen] == ["/doc"]


async def test_localhost_resolves_to_loopback_and_is_refused(web: Server) -> None:
    addresses = await outbound.resolve("localhost", web.port)
    assert ipaddress.ip_address("127.0.0.1") in addresses
    assert {outbound.address_refusal(address) for address in addresses} == {"loopback"}
    # Refused by name, even by a policy that lets 127.0.0.1 in.
    with pytest.raises(Refused, match=r"host is not allowed \(loopback\)"):
        await outbound.fetch(f"http://localhost:{web.port}/doc", policy=LOOPBACK)
    assert web.seen == []


# -- where the connection goes -----------------------------------------------------------------


async def test_the_connection_goes_to_the_checked_address_with_the_name_as_host(
    web: Server,
) -> None:
    # docs.example resolves nowhere but in the stub: only a pinned connection can reach it.
    resolver = Resolver(["127.0.0.1"])
    fetched = await outbound.fetch(
        f"http://docs.example:{web.port}/doc", policy=LOOPBACK, resolver=resolver
    )
    assert fetched.body == SECRET
    assert resolver.asked == [("docs.example", web.port)]
    assert web.seen[0].headers["host"] == f"docs.example:{web.port}"


@dataclass
class Rebinding:
    """One port on two loopback addresses: 127.0.0.1 may be reached, 127.0.0.2 may not."""

    allowed: Server
    forbidden: Server


@pytest.fixture
def rebinding(web: Server) -> Iterator[Rebinding]:
    seen: list[Seen] = []
    forbidden = ThreadingHTTPServer(("127.0.0.2", web.port), handler_class(seen, site))
    forbidden.daemon_threads = True
    thread = threading.Thread(target=forbidden.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield Rebinding(web, Server(f"http://127.0.0.2:{web.port}", seen))
    finally:
        forbidden.shutdown()
        forbidden.server_close()


async def test_a_name_is_resolved_once_so_rebinding_cannot_move_the_connection(
    rebinding: Rebinding,
) -> None:
    # A rebinding name: a public-looking answer for the check, loopback for the connection.
    resolver = Resolver(["127.0.0.1"], ["127.0.0.2"])
    url = f"http://rebind.example:{rebinding.allowed.port}/doc"
    fetched = await outbound.fetch(url, policy=LOOPBACK, resolver=resolver)
    assert fetched.body == SECRET
    assert len(resolver.asked) == 1
    assert [seen.path for seen in rebinding.allowed.seen] == ["/doc"]
    assert rebinding.forbidden.seen == []


async def test_each_redirect_is_resolved_and_checked_again(rebinding: Rebinding) -> None:
    resolver = Resolver(["127.0.0.1"], ["127.0.0.2"])
    url = f"http://rebind.example:{rebinding.allowed.port}/moved"
    with pytest.raises(Refused) as refused:
        await outbound.fetch(url, policy=LOOPBACK, resolver=resolver)
    assert str(refused.value) == "a redirect's address is not allowed (loopback)"
    assert len(resolver.asked) == 2
    assert rebinding.forbidden.seen == []


@pytest.mark.parametrize(
    ("location", "error"),
    [
        ("http://127.0.0.2:{port}/doc", "a redirect's address is not allowed (loopback)"),
        ("http://0x7f.0.0.2:{port}/doc", "a redirect's address is not allowed (loopback)"),
        ("http://[::ffff:127.0.0.2]:{port}/doc", "a redirect's address is not allowed (loopback)"),
        ("http://localhost:{port}/doc", "a redirect's host is not allowed (loopback)"),
        ("http://169.254.169.254/latest/", "a redirect's address is not allowed (cloud metadata)"),
        ("http://metadata.google.internal/", "a redirect's host is not allowed (cloud metadata)"),
        ("http://10.0.0.1/", "a redirect's address is not allowed (private network)"),
        ("file:///etc/passwd", "only http and https URLs can be fetched"),
    ],
)  # fmt: skip
async def test_a_redirect_inside_is_refused(
    rebinding: Rebinding, location: str, error: str
) -> None:
    target = location.format(port=rebinding.allowed.port)
    with pytest.raises(Refused) as refused:
        await outbound.fetch(f"{rebinding.allowed.url}/to?{target}", policy=LOOPBACK)
    assert str(refused.value) == error
    assert rebinding.forbidden.seen == []


async def test_redirects_are_followed_a_bounded_number_of_times(web: Server) -> None:
    fetched = await outbound.fetch(f"{web.url}/moved", policy=LOOPBACK)
    assert fetched.body == SECRET
    with pytest.raises(Refused) as refused:
        await outbound.fetch(f"{web.url}/loop", policy=LOOPBACK, limits=Limits(max_redirects=2))
    assert str(refused.value) == "the URL redirected more than 2 times"
    assert [seen.path for seen in web.seen] == ["/moved", "/doc", "/loop", "/loop", "/loop"]


PROXY_VARIABLES = (
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "ALL_PROXY",
    "http_proxy",
    "https_proxy",
    "all_proxy",
)


@pytest.fixture
def environment_proxy(monkeypatch: pytest.MonkeyPatch) -> Iterator[Server]:
    """A live proxy named in every variable httpx reads; it answers, so a leak would show."""
    with serving(lambda handler: handler.reply(200, "text/plain", b"from the proxy")) as proxy:
        for name in PROXY_VARIABLES:
            monkeypatch.setenv(name, proxy.url)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        yield proxy


async def test_proxies_from_the_environment_are_not_used(
    web: Server, environment_proxy: Server
) -> None:
    fetched = await outbound.fetch(f"{web.url}/doc", policy=LOOPBACK)
    assert fetched.body == SECRET
    assert environment_proxy.seen == []


# -- how much and how long ---------------------------------------------------------------------


@pytest.mark.parametrize("path", ["/declared-big", "/streamed-big"])
async def test_the_size_cap_holds_without_saying_the_size(web: Server, path: str) -> None:
    with pytest.raises(Refused) as refused:
        await outbound.fetch(f"{web.url}{path}", policy=LOOPBACK, limits=Limits(max_bytes=1000))
    assert str(refused.value) == "the response is over the size limit (1000 bytes)"


async def test_a_compressed_answer_is_refused_rather_than_inflated(web: Server) -> None:
    with pytest.raises(Refused, match="compressed"):
        await outbound.fetch(f"{web.url}/gzip", policy=LOOPBACK)
    assert web.seen[0].headers["accept-encoding"] == "identity"


@pytest.fixture
def slow() -> Iterator[Server]:
    """/drip sends a byte every 50 ms, /stall sends its headers and then nothing."""
    done = threading.Event()

    def answer(handler: QuietHandler) -> None:
        handler.send_response(200)
        handler.send_header("Content-Type", "text/plain")
        handler.end_headers()
        handler.wfile.flush()
        with contextlib.suppress(OSError):
            while not done.wait(0.05 if handler.path == "/drip" else 10):
                handler.wfile.write(b"x")
                handler.wfile.flush()

    with serving(answer) as server:
        yield server
        done.set()


@pytest.mark.parametrize(
    ("path", "limits"),
    [
        ("/drip", Limits(read_seconds=5, total_seconds=0.5)),
        ("/stall", Limits(read_seconds=0.3, total_seconds=30)),
    ],
)
async def test_a_slow_server_hits_the_time_cap(slow: Server, path: str, limits: Limits) -> None:
    started = time.monotonic()
    with pytest.raises(Failed) as failed:
        await outbound.fetch(f"{slow.url}{path}", policy=LOOPBACK, limits=limits)
    assert str(failed.value) == "fetching the URL timed out"
    assert time.monotonic() - started < 3
    assert failed.value.retryable  # may pass later


# -- what the owner reads ----------------------------------------------------------------------


async def test_a_failed_connection_does_not_name_the_address() -> None:
    with socket.socket() as unused:
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    log = Log()
    with pytest.raises(Failed) as failed:
        await outbound.fetch(
            f"http://docs.example:{port}/a",
            policy=LOOPBACK,
            resolver=Resolver(["127.0.0.1"]),
            log=log,
        )
    assert str(failed.value) == "fetching the URL failed: no answer from its server"
    assert log.lines[0]["address"] == "127.0.0.1"


async def test_an_unresolvable_name_is_retried() -> None:
    async def nothing(host: str, port: int) -> Sequence[Address]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    with pytest.raises(Failed) as failed:
        await outbound.fetch("http://docs.example/a", resolver=nothing)
    assert str(failed.value) == "the URL's host name could not be resolved"


@pytest.mark.parametrize(
    ("path", "kind", "error"),
    [
        ("/missing", Unavailable, "the URL is not available (HTTP 404)"),
        ("/broken", Failed, "fetching the URL failed (HTTP 500)"),
    ],
)
async def test_an_error_answer_keeps_its_body_out_of_the_message(
    web: Server, path: str, kind: type[Exception], error: str
) -> None:
    with pytest.raises(kind) as raised:
        await outbound.fetch(f"{web.url}{path}", policy=LOOPBACK)
    assert str(raised.value) == error


# -- TLS: the name is verified although the connection goes to an address -----------------------


@dataclass
class TlsServer:
    server: Server
    client_context: ssl.SSLContext
    server_names: list[str | None]


@pytest.fixture
def tls(tmp_path: Path) -> Iterator[TlsServer]:
    """An HTTPS server whose certificate names docs.example, trusted by `client_context`."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "docs.example")])
    now = datetime.datetime.now(datetime.UTC)
    certificate = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("docs.example")]), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    pem = certificate.public_bytes(serialization.Encoding.PEM)
    (tmp_path / "cert.pem").write_bytes(pem)
    (tmp_path / "key.pem").write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    server_context.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    server_names: list[str | None] = []
    server_context.sni_callback = lambda _sock, sni, _ctx: server_names.append(sni)
    seen: list[Seen] = []
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler_class(seen, site))
    httpd.daemon_threads = True
    httpd.socket = server_context.wrap_socket(httpd.socket, server_side=True)
    thread = threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield TlsServer(
            Server(f"https://127.0.0.1:{httpd.server_address[1]}", seen),
            ssl.create_default_context(cadata=pem.decode()),
            server_names,
        )
    finally:
        httpd.shutdown()
        httpd.server_close()


async def test_https_sends_the_name_as_sni_and_verifies_the_certificate_for_it(
    tls: TlsServer,
) -> None:
    fetched = await outbound.fetch(
        f"https://docs.example:{tls.server.port}/doc",
        policy=LOOPBACK,
        resolver=Resolver(["127.0.0.1"]),
        verify=tls.client_context,
    )
    assert fetched.body == SECRET
    assert tls.server_names == ["docs.example"]
    assert tls.server.seen[0].headers["host"] == f"docs.example:{tls.server.port}"


async def test_https_refuses_a_certificate_for_another_name(tls: TlsServer) -> None:
    with pytest.raises(Failed, match="no answer from its server"):
        await outbound.fetch(
            f"https://other.example:{tls.server.port}/doc",
            policy=LOOPBACK,
            resolver=Resolver(["127.0.0.1"]),
            verify=tls.client_context,
        )
    assert tls.server.seen == []


# -- Storage -----------------------------------------------------------------------------------


def storage_api(handler: QuietHandler) -> None:
    """The object download of supabase/storage-api, as storage3 calls it."""
    prefix = "/storage/v1/object/docs/"
    if handler.headers.get("Authorization") != f"Bearer {SERVICE_KEY}":
        handler.reply(400, "application/json", b'{"statusCode":"403","error":"Unauthorized"}')
    elif handler.path == f"{prefix}{OWNER}/reports/q1 2026.txt".replace(" ", "%20"):
        handler.reply(200, "text/markdown; charset=utf-8", SECRET)
    elif handler.path == f"{prefix}{OWNER}/big.txt":
        handler.reply(200, "text/plain", b"x" * 2000)
    elif handler.path == f"{prefix}{OWNER}/broken.txt":
        handler.reply(500, "application/json", INTERNAL_BODY)
    elif handler.path == f"{prefix}{OWNER}/moved.txt":
        redirect(handler, "http://127.0.0.1:9/elsewhere")
    else:
        body = b'{"statusCode":"404","error":"not_found","message":"Object not found"}'
        handler.reply(400, "application/json", body)


@pytest.fixture(scope="module")
def storage_api_server() -> Iterator[Server]:
    with serving(storage_api) as server:
        yield server


@pytest.fixture
def storage_server(storage_api_server: Server) -> Server:
    storage_api_server.seen.clear()
    return storage_api_server


def storage(server: Server, **options: Any) -> outbound.Storage:
    return outbound.Storage(server.url, SERVICE_KEY, frozenset({"docs"}), **options)


async def test_a_file_in_the_owners_folder_is_read_through_storage3(
    storage_server: Server,
) -> None:
    fetched = await storage(storage_server).read(f"docs/{OWNER}/reports/q1 2026.txt", OWNER)
    assert (fetched.body, fetched.content_type) == (SECRET, "text/markdown")
    [seen] = storage_server.seen
    assert seen.path == f"/storage/v1/object/docs/{OWNER}/reports/q1%202026.txt"
    assert seen.headers["authorization"] == f"Bearer {SERVICE_KEY}"
    assert seen.headers["apikey"] == SERVICE_KEY


REFUSED_PATHS = [
    ("docs/../docs/{owner}/a.txt", "no empty segments|'.' or '..'|user id"),
    ("docs/{owner}/../{other}/a.txt", "'.' or '..'"),
    ("docs/{owner}/./a.txt", "'.' or '..'"),
    ("docs/{owner}/a/..", "'.' or '..'"),
    ("docs/{owner}//a.txt", "no empty segments"),
    ("docs/{owner}/a.txt/", "no empty segments"),
    ("docs/{owner}/", "no empty segments"),
    ("docs//{owner}/a.txt", "no empty segments"),
    ("docs/{owner}", "no empty segments"),
    ("docs/{owner}/a\\..\\..\\{other}\\a.txt", "backslashes"),
    ("/docs/{owner}/a.txt", "must not start with '/'"),
    ("docs/{owner}/a.txt\x00.png", "control characters"),
    ("docs/{owner}/a\n.txt", "control characters"),
    ("docs/{owner}/a\u202e.txt", "control characters"),
    ("docs/{owner}/%2e%2e/{other}/a.txt", "percent-encoded"),
    ("docs/{owner}/%2E./{other}/a.txt", "percent-encoded"),
    ("docs/{owner}/.%2E/{other}/a.txt", "percent-encoded"),
    ("docs/{owner}/%252e%252e/{other}/a.txt", "percent-encoded"),
    ("docs/{owner}/a%2fb.txt", "percent-encoded"),
    ("docs/{owner}/a#b.txt", "characters Storage object names cannot have"),
    ("docs/{owner}/a?b.txt", "characters Storage object names cannot have"),
    ("docs/{upper}/a.txt", "user id, in lower case"),
    ("docs/a.txt", "no empty segments|user id"),
    ("docs/not-a-user/a.txt", "user id"),
    ("../{owner}/a.txt", "bucket name"),
    ("Docs/{owner}/a.txt", "bucket name"),
]


@pytest.mark.parametrize(("path", "error"), REFUSED_PATHS)
async def test_a_path_that_could_leave_the_owners_folder_is_refused_before_any_request(
    storage_server: Server, path: str, error: str
) -> None:
    path = path.format(owner=OWNER, other=OTHER, upper=str(OWNER).upper())

    class Params(BaseModel):
        storage_path: outbound.StoragePath

    with pytest.raises(ValidationError, match=error):
        Params(storage_path=path)
    with pytest.raises(Refused, match=error):
        await storage(storage_server).read(path, OWNER)
    assert storage_server.seen == []


@pytest.mark.parametrize(
    ("owner", "error"),
    [
        (OTHER, "storage_path must be in your own folder: <bucket>/<your user id>/<name>"),
        (None, "storage_path can only be read for a job that belongs to a user"),
    ],
)
async def test_another_users_folder_is_refused(
    storage_server: Server, owner: UUID | None, error: str
) -> None:
    with pytest.raises(Refused) as refused:
        await storage(storage_server).read(f"docs/{OWNER}/reports/q1 2026.txt", owner)
    assert str(refused.value) == error
    assert storage_server.seen == []


async def test_the_service_key_goes_to_supabase_url_and_nowhere_else(
    storage_server: Server, environment_proxy: Server
) -> None:
    with pytest.raises(Failed):
        await storage(storage_server).read(f"docs/{OWNER}/moved.txt", OWNER)
    assert [seen.path for seen in storage_server.seen] == [
        f"/storage/v1/object/docs/{OWNER}/moved.txt"
    ]
    assert environment_proxy.seen == []  # neither the redirect nor a proxy got the key


@pytest.mark.parametrize(
    ("name", "kind", "error"),
    [
        ("missing.txt", Unavailable, "the file is not available in Storage"),
        ("broken.txt", Failed, "reading the file from Storage failed"),
        ("big.txt", Refused, "the file is over the size limit (1000 bytes)"),
    ],
)
async def test_storage_errors_are_public_and_their_detail_is_logged(
    storage_server: Server, name: str, kind: type[outbound.OutboundError], error: str
) -> None:
    log = Log()
    with pytest.raises(kind) as raised:
        await storage(storage_server, limits=Limits(max_bytes=1000)).read(
            f"docs/{OWNER}/{name}", OWNER, log=log
        )
    assert str(raised.value) == error
    assert log.lines[0]["key"] == f"{OWNER}/{name}"


def test_storage_from_env_needs_the_url_and_the_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SUPABASE_URL", "https://project.supabase.co")
    monkeypatch.setenv("SUPABASE_SERVICE_ROLE_KEY", SERVICE_KEY)
    assert outbound.Storage.from_env(frozenset({"docs"})).url == "https://project.supabase.co"
    monkeypatch.delenv("SUPABASE_SERVICE_ROLE_KEY")
    with pytest.raises(PermanentJobError, match="SUPABASE_SERVICE_ROLE_KEY"):
        outbound.Storage.from_env(frozenset({"docs"}))


async def test_a_bucket_the_handler_does_not_read_is_refused(storage_server: Server) -> None:
    # The service key reads every bucket; a user's folder in a bucket laid out otherwise (or
    # one only admins may read) must stay out of reach.
    with pytest.raises(outbound.Refused, match="a bucket this job type reads"):
        await storage(storage_server).read(f"reviews/{OWNER}/notes.txt", OWNER)
    assert storage_server.seen == []
