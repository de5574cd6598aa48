"""Reads a handler makes on a job owner's behalf: a URL they gave, a Storage file of theirs.

A job's parameters come from its owner, and the runner sits inside the project's network with the
service-role key in its environment. Fetching a URL or a Storage path as given would let any user
reach loopback, private ranges or cloud metadata, and read other users' files: a server-side request
forgery. Handlers therefore read through this module:

- `fetch(url)` refuses anything but http(s) to a public address. The host is resolved once, every
  address it resolves to is checked against an `AddressPolicy`, and the connection goes to the
  checked address (the Host header and TLS SNI keep the name), so a DNS answer that changes
  between check and connect cannot move it. Redirects are followed by hand, each hop checked
  alike. Proxies from the environment are ignored; size and time are capped.
- `StoragePath` (a pydantic type) and `Storage.read` confine Storage reads to
  `<bucket>/<owner's user id>/<name>`, the Supabase convention for a user's folder, and refuse
  any path that could be read as another one.

Every error is a `JobError` whose message is public: it is the job's `error`, read by the owner. It
names the problem (and the policy's reason) but never what the runner saw: no resolved address, no
upstream body, no size of what was refused. That detail goes to the log given as `log`.
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import re
import socket
import ssl
import unicodedata
import urllib.parse
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Annotated, Any, Protocol
from uuid import UUID

import httpx
import structlog
from pydantic import AfterValidator
from storage3.exceptions import StorageApiError
from supabase import AsyncClientOptions, create_async_client

from jobhook.jobs import JobError, PermanentJobError

__all__ = [
    "PUBLIC_ONLY",
    "AddressPolicy",
    "Failed",
    "Fetched",
    "Limits",
    "OutboundError",
    "Refused",
    "Storage",
    "StorageObject",
    "StoragePath",
    "Unavailable",
    "address_refusal",
    "fetch",
    "parse_storage_path",
    "resolve",
]

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
Resolver = Callable[[str, int], Awaitable[Sequence[Address]]]

_log = structlog.get_logger("jobhook.outbound")


class Log(Protocol):
    """Where the internal detail of a refusal or failure goes: `ctx.log` in a handler."""

    def warning(self, event: str, **detail: Any) -> Any: ...


# -- errors -------------------------------------------------------------------------------------


class OutboundError(JobError):
    """A read that did not happen. `str()` is public; `detail` is for the logs only."""

    def __init__(self, message: str, **detail: Any) -> None:
        super().__init__(message)
        self.detail = detail


class Refused(OutboundError, PermanentJobError):
    """The policy forbids the request or its answer (address, scheme, size...): never retried."""


class Unavailable(OutboundError, PermanentJobError):
    """The server says the resource is not there or not ours to read (401, 403, 404, 410)."""


class Failed(OutboundError):
    """A failure that may pass (timeout, connection error, 5xx): retried with backoff."""


# -- which addresses may be reached ------------------------------------------------------------


def _networks(*cidrs: str) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(cidr) for cidr in cidrs)


# The most specific reason first: 169.254.169.254 is link-local too, but "cloud metadata" is what
# a reader of the logs needs to see.
_REFUSED: tuple[tuple[str, tuple[Network, ...]], ...] = (
    (
        "cloud metadata",
        _networks(
            "169.254.169.254/32",  # AWS, GCP, Azure, OpenStack...
            "169.254.170.2/32",  # AWS ECS task credentials
            "100.100.100.200/32",  # Alibaba Cloud
            "fd00:ec2::254/128",  # AWS over IPv6
        ),
    ),
    ("unspecified", _networks("0.0.0.0/8", "::/128")),
    ("loopback", _networks("127.0.0.0/8", "::1/128")),
    (
        "private network",
        _networks(
            "10.0.0.0/8",
            "172.16.0.0/12",
            "192.168.0.0/16",
            "100.64.0.0/10",  # carrier-grade NAT, also used inside cloud VPCs
            "fc00::/7",
            "64:ff9b:1::/48",  # local-use NAT64: its embedded IPv4 is a site's own
        ),
    ),
    ("link-local", _networks("169.254.0.0/16", "fe80::/10")),
    ("multicast", _networks("224.0.0.0/4", "ff00::/8")),
    ("broadcast", _networks("255.255.255.255/32")),
    (
        "reserved",
        _networks(
            "240.0.0.0/4",
            "192.0.0.0/24",
            "192.0.2.0/24",
            "198.18.0.0/15",
            "198.51.100.0/24",
            "203.0.113.0/24",
            "192.88.99.0/24",
            "100::/64",
            "2001:db8::/32",
            "fec0::/10",
        ),
    ),
)

# IPv6 forms that carry an IPv4 address the packets end up at, or that a translator turns into it.
_SIIT = ipaddress.ip_network("::ffff:0:0:0/96")
_COMPATIBLE = ipaddress.ip_network("::/96")
_NAT64 = ipaddress.ip_network("64:ff9b::/96")


def _embedded_ipv4(address: Address) -> list[ipaddress.IPv4Address]:
    if isinstance(address, ipaddress.IPv4Address):
        return []
    low32 = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if address.ipv4_mapped is not None:
        return [address.ipv4_mapped]
    if address in _SIIT or address in _COMPATIBLE or address in _NAT64:
        return [low32]
    if address.sixtofour is not None:
        return [address.sixtofour]
    if address.teredo is not None:
        return list(address.teredo)
    return []


def _own_refusal(address: Address) -> str | None:
    for reason, networks in _REFUSED:
        if any(address in network for network in networks):
            return reason
    return None if address.is_global else "reserved"


def address_refusal(address: Address) -> str | None:
    """Why `address` may not be reached (e.g. "loopback"), or None for a public unicast address."""
    if address in _COMPATIBLE and int(address) <= 1:
        return _own_refusal(address)  # :: and ::1 themselves, not IPv4-compatible forms
    embedded = _embedded_ipv4(address)
    for inner in embedded:
        if (reason := _own_refusal(inner)) is not None:
            return reason
    if isinstance(address, ipaddress.IPv6Address) and (
        address.ipv4_mapped is not None or any(address in n for n in (_SIIT, _COMPATIBLE, _NAT64))
    ):
        return None  # the IPv4 address is the destination, and it passed
    # 6to4 and Teredo relay through public addresses of their own: judged as IPv6 as well.
    return _own_refusal(address)


@dataclass(frozen=True)
class AddressPolicy:
    """Public unicast addresses only, plus `also_allow` (for tests and deliberate exceptions).

    An address that embeds an IPv4 one (::ffff:a.b.c.d and kin) is judged by the IPv4 address.
    """

    also_allow: tuple[Network, ...] = ()

    def refusal(self, address: Address) -> str | None:
        for candidate in (address, *_embedded_ipv4(address)):
            if any(candidate in network for network in self.also_allow):
                return None
        return address_refusal(address)


PUBLIC_ONLY = AddressPolicy()

# Names that lead inside whatever their address: loopback by convention (RFC 6761), the clouds'
# metadata services, and suffixes reserved for private use, which only a local resolver answers.
_INTERNAL_NAMES = {
    "localhost": "loopback",
    "metadata": "cloud metadata",
    "metadata.google.internal": "cloud metadata",
    "metadata.goog": "cloud metadata",
    "instance-data": "cloud metadata",
}
_INTERNAL_SUFFIXES = {
    ".localhost": "loopback",
    ".internal": "internal host name",
    ".local": "internal host name",
    ".localdomain": "internal host name",
    ".home.arpa": "internal host name",
}


def _name_refusal(name: str) -> str | None:
    if name in _INTERNAL_NAMES:
        return _INTERNAL_NAMES[name]
    for suffix, reason in _INTERNAL_SUFFIXES.items():
        if name.endswith(suffix):
            return reason
    if "." not in name:
        # A single label is completed by the resolver's search domains: an internal name.
        return "internal host name"
    return None


_NUMBER = re.compile(r"0[xX][0-9a-fA-F]*|[0-9]+")


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """What inet_aton and URL parsers make of 2130706433, 0177.0.0.1, 0x7f.1 or 127.1."""
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_NUMBER.fullmatch(part) for part in parts):
        return None
    numbers = []
    for part in parts:
        if part[:2].lower() == "0x":
            numbers.append(int(part[2:] or "0", 16))
        elif len(part) > 1 and part.startswith("0"):
            if not set(part) <= set("01234567"):
                return None
            numbers.append(int(part, 8))
        else:
            numbers.append(int(part))
    *head, last = numbers
    if any(number > 255 for number in head) or last >= 256 ** (4 - len(head)):
        return None
    value = sum(number << (8 * (3 - i)) for i, number in enumerate(head)) + last
    return ipaddress.IPv4Address(value)


def _literal_address(host: str) -> Address | None:
    """The address a host names without DNS; Refused when it looks like one but is not valid."""
    try:
        return ipaddress.ip_address(urllib.parse.unquote(host))
    except ValueError:
        pass
    # A host whose last label is a number is an IPv4 address to URL parsers and to inet_aton;
    # one that is not a valid address must not be handed to a resolver to interpret.
    if _NUMBER.fullmatch(host.rsplit(".", 1)[-1]):
        if (address := _legacy_ipv4(host)) is None:
            raise Refused("the URL's host is not a valid address", host=host)
        return address
    return None


async def resolve(host: str, port: int) -> list[Address]:
    """The host's addresses, in the resolver's order; getaddrinfo runs in the loop's executor."""
    infos = await asyncio.get_running_loop().getaddrinfo(host, port, type=socket.SOCK_STREAM)
    addresses: list[Address] = []
    for *_, sockaddr in infos:
        address = ipaddress.ip_address(sockaddr[0])
        if address not in addresses:
            addresses.append(address)
    return addresses


# -- fetching a URL ----------------------------------------------------------------------------


@dataclass(frozen=True)
class Limits:
    max_bytes: int = 10 * 1024 * 1024
    connect_seconds: float = 5.0
    # Between two reads of the response; `total_seconds` bounds the whole read, redirects and
    # resolution included, so a server that sends a byte a second cannot hold the job.
    read_seconds: float = 15.0
    total_seconds: float = 60.0
    max_redirects: int = 5

    @property
    def timeout(self) -> httpx.Timeout:
        return httpx.Timeout(
            connect=self.connect_seconds,
            read=self.read_seconds,
            write=self.read_seconds,
            pool=self.connect_seconds,
        )


DEFAULT_LIMITS = Limits()


@dataclass(frozen=True)
class Fetched:
    body: bytes
    content_type: str  # the media type, lower case, without parameters


_REDIRECTS = frozenset({301, 302, 303, 307, 308})
_UNAVAILABLE = frozenset({401, 403, 404, 410})


@dataclass(frozen=True)
class _Target:
    """One hop: the URL as given, and the same request aimed at the checked address."""

    url: httpx.URL
    address: Address
    host_header: str
    sni_hostname: str | None

    @property
    def pinned_url(self) -> httpx.URL:
        return self.url.copy_with(host=str(self.address))


async def fetch(
    url: str,
    *,
    policy: AddressPolicy = PUBLIC_ONLY,
    limits: Limits = DEFAULT_LIMITS,
    resolver: Resolver = resolve,
    verify: ssl.SSLContext | bool = True,
    log: Log | None = None,
) -> Fetched:
    """GET `url` from a public address, following up to `limits.max_redirects` redirects.

    Raises Refused, Unavailable (permanent) or Failed (retried); each is logged with its detail
    on `log` (pass `ctx.log`) before it is raised.
    """
    try:
        async with asyncio.timeout(limits.total_seconds):
            return await _follow(url, policy, limits, resolver, verify)
    except TimeoutError as exc:
        error: OutboundError = Failed("fetching the URL timed out", url=url)
        error.__cause__ = exc
    except OutboundError as exc:
        error = exc
    (log or _log).warning("outbound fetch not done", error=str(error), **error.detail)
    raise error


async def _follow(
    url: str,
    policy: AddressPolicy,
    limits: Limits,
    resolver: Resolver,
    verify: ssl.SSLContext | bool,
) -> Fetched:
    current = url
    for hop in range(limits.max_redirects + 1):
        target = await _target(current, policy, resolver, redirected=hop > 0)
        async with _client(limits, verify) as client:
            try:
                request = client.build_request(
                    "GET",
                    target.pinned_url,
                    headers={"Host": target.host_header},
                    extensions={"sni_hostname": target.sni_hostname} if target.sni_hostname else {},
                )
                response = await client.send(request, stream=True)
                try:
                    if response.status_code in _REDIRECTS and "location" in response.headers:
                        # Joined to the URL as given, not the pinned one: a relative Location
                        # names the same host, which is resolved and checked again.
                        current = str(target.url.join(response.headers["location"]))
                        continue
                    _check_status(response.status_code, url=current)
                    await response.aread()
                finally:
                    await response.aclose()
            except httpx.InvalidURL as exc:
                raise Refused("the URL is not valid", url=current) from exc
            except _TooLarge as exc:
                raise Refused(
                    f"the response is over the size limit ({limits.max_bytes} bytes)",
                    url=current,
                    declared=exc.declared,
                ) from exc
            except _Encoded as exc:
                raise Refused(
                    "the response was compressed although an uncompressed one was asked for",
                    url=current,
                    encoding=exc.encoding,
                ) from exc
            except httpx.TimeoutException as exc:
                raise Failed("fetching the URL timed out", url=current, cause=repr(exc)) from exc
            except httpx.HTTPError as exc:
                raise Failed(
                    "fetching the URL failed: no answer from its server",
                    url=current,
                    address=str(target.address),
                    cause=repr(exc),
                ) from exc
            return Fetched(response.content, _media_type(response))
    raise Refused(f"the URL redirected more than {limits.max_redirects} times", url=url)


async def _target(
    url: str, policy: AddressPolicy, resolver: Resolver, *, redirected: bool
) -> _Target:
    subject = "a redirect's" if redirected else "the URL's"
    try:
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii").lower()
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
    except (httpx.InvalidURL, UnicodeDecodeError) as exc:
        raise Refused("the URL is not valid", url=url) from exc
    if parsed.scheme not in ("http", "https"):
        raise Refused("only http and https URLs can be fetched", url=url)
    if parsed.userinfo:
        # Credentials in a URL are how parsers are told apart (http://evil@127.0.0.1): refuse.
        raise Refused("URLs with a user name or password are not allowed", url=url)
    name = host.removesuffix(".")
    if not name or name.endswith("."):
        raise Refused("the URL's host is not valid", url=url)

    address = _literal_address(name)
    if address is None:
        if "%" in name:
            # A resolver takes "%6c" literally while a reader sees "l": neither is a name.
            raise Refused("the URL's host is not valid", url=url)
        if (reason := _name_refusal(name)) is not None:
            raise Refused(f"{subject} host is not allowed ({reason})", url=url, reason=reason)
        try:
            addresses = list(await resolver(host, port))
        except (OSError, UnicodeError) as exc:
            raise Failed(
                f"{subject} host name could not be resolved", url=url, cause=repr(exc)
            ) from exc
        if not addresses:
            raise Failed(f"{subject} host name could not be resolved", url=url)
    else:
        addresses = [address]
    # Every address must pass, not only the one used: a name that also points inside is refused
    # whichever address a resolver would have put first.
    for candidate in addresses:
        if (reason := policy.refusal(candidate)) is not None:
            raise Refused(
                f"{subject} address is not allowed ({reason})",
                url=url,
                address=str(candidate),
                reason=reason,
            )
    return _Target(
        url=parsed,
        address=addresses[0],
        host_header=parsed.netloc.decode("ascii"),
        sni_hostname=name if address is None and parsed.scheme == "https" else None,
    )


def _check_status(status: int, **detail: Any) -> None:
    if status in _UNAVAILABLE:
        raise Unavailable(f"the URL is not available (HTTP {status})", status=status, **detail)
    if not 200 <= status < 300:
        raise Failed(f"fetching the URL failed (HTTP {status})", status=status, **detail)


def _media_type(response: httpx.Response) -> str:
    value: str = response.headers.get("content-type", "application/octet-stream")
    return value.split(";")[0].strip().lower()


# -- one HTTP client for both kinds of read ----------------------------------------------------


class _TooLarge(Exception):
    def __init__(self, declared: int | None = None) -> None:
        self.declared = declared


class _Encoded(Exception):
    def __init__(self, encoding: str) -> None:
        self.encoding = encoding


class _CappedStream(httpx.AsyncByteStream):
    def __init__(self, inner: httpx.AsyncByteStream, max_bytes: int) -> None:
        self._inner = inner
        self._max_bytes = max_bytes

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self._inner:
            received += len(chunk)
            if received > self._max_bytes:
                raise _TooLarge
            yield chunk

    async def aclose(self) -> None:
        await self._inner.aclose()


class _CappedTransport(httpx.AsyncBaseTransport):
    """Stops reading at `max_bytes`, for callers that read whole bodies (storage3 does).

    Compressed answers are refused rather than counted: a few kilobytes of gzip can inflate to
    gigabytes, and the cap must hold for what ends up in memory.
    """

    def __init__(self, max_bytes: int, verify: ssl.SSLContext | bool) -> None:
        self._inner = httpx.AsyncHTTPTransport(verify=verify, retries=0)
        self._max_bytes = max_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        try:
            encoding = response.headers.get("content-encoding", "identity").strip().lower()
            if encoding != "identity":
                raise _Encoded(encoding)
            declared = response.headers.get("content-length", "")
            if declared.isdigit() and int(declared) > self._max_bytes:
                raise _TooLarge(int(declared))
        except BaseException:
            await response.aclose()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            response.status_code,
            headers=response.headers,
            stream=_CappedStream(response.stream, self._max_bytes),
            extensions=response.extensions,
            request=request,
        )

    async def aclose(self) -> None:
        await self._inner.aclose()


def _client(limits: Limits, verify: ssl.SSLContext | bool, **options: Any) -> httpx.AsyncClient:
    # trust_env=False: an HTTP(S)_PROXY or ALL_PROXY in the runner's environment would get the
    # request, and the proxy connects wherever the name resolves for it, outside our check.
    return httpx.AsyncClient(
        transport=_CappedTransport(limits.max_bytes, verify),
        trust_env=False,
        follow_redirects=False,
        timeout=limits.timeout,
        headers={"Accept-Encoding": "identity"},
        **options,
    )


# -- reading the job owner's Storage files -----------------------------------------------------

_BUCKET = re.compile(r"[a-z0-9][a-z0-9_-]*(?:\.[a-z0-9_-]+)*")
# The characters Supabase Storage accepts in object names, without "%" (storage3 percent-decodes
# the name, so "%2e%2e" would become ".."), "#" and "?".
_NAME_SEGMENT = re.compile(r"[\w!\-.*'() &$@=;:+,]+")


@dataclass(frozen=True)
class StorageObject:
    bucket: str
    owner: UUID
    name: str  # below the owner's folder

    @property
    def key(self) -> str:
        return f"{self.owner}/{self.name}"


def parse_storage_path(value: str) -> StorageObject:
    """`<bucket>/<user id>/<name>` split and checked; ValueError with a public message if not."""
    if not value or len(value) > 1024:
        raise ValueError(
            "storage_path must be <bucket>/<your user id>/<name>, up to 1024 characters"
        )
    if value.startswith("/"):
        raise ValueError("storage_path must not start with '/'")
    if "\\" in value:
        raise ValueError("storage_path must not contain backslashes")
    if any(unicodedata.category(char) in ("Cc", "Cf") for char in value):
        raise ValueError("storage_path must not contain control characters")
    if "%" in value:
        raise ValueError("storage_path must not be percent-encoded: write the name as it is")
    bucket, _, rest = value.partition("/")
    owner_segment, _, name = rest.partition("/")
    segments = name.split("/")
    if "" in (bucket, owner_segment, *segments):
        raise ValueError("storage_path must be <bucket>/<your user id>/<name>, no empty segments")
    if any(segment in (".", "..") for segment in segments):
        raise ValueError("storage_path must not contain '.' or '..' segments")
    if not _BUCKET.fullmatch(bucket):
        raise ValueError("storage_path must start with a bucket name (a-z, 0-9, '.', '_', '-')")
    try:
        owner = UUID(owner_segment)
    except ValueError:
        owner = None
    if owner is None or str(owner) != owner_segment:
        raise ValueError("storage_path's second segment must be your user id, in lower case")
    if not all(_NAME_SEGMENT.fullmatch(segment) for segment in segments):
        raise ValueError("storage_path has characters Storage object names cannot have")
    return StorageObject(bucket=bucket, owner=owner, name=name)


def _valid_storage_path(value: str) -> str:
    parse_storage_path(value)
    return value


StoragePath = Annotated[str, AfterValidator(_valid_storage_path)]
"""A handler parameter naming a file in its owner's folder: `<bucket>/<user id>/<name>`."""


@dataclass(frozen=True)
class Storage:
    """The project's Storage, read with the service-role key, one owner's folder at a time, in
    the buckets named here only.

    The key bypasses Storage's RLS, so the checks here stand in for it: the owner's folder, and
    the buckets the handler is meant to read (a bucket laid out another way, or one only admins
    may read, would otherwise be open to any user who names it).
    """

    url: str
    service_key: str = field(repr=False)
    buckets: frozenset[str] = frozenset()
    limits: Limits = DEFAULT_LIMITS
    verify: ssl.SSLContext | bool = True

    @classmethod
    def from_env(cls, buckets: frozenset[str], limits: Limits = DEFAULT_LIMITS) -> Storage:
        """SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY, from the runner's Modal secret."""
        url = os.environ.get("SUPABASE_URL")
        key = os.environ.get("SUPABASE_SERVICE_ROLE_KEY")
        if not url or not key:
            raise PermanentJobError(
                "reading Storage needs SUPABASE_URL and SUPABASE_SERVICE_ROLE_KEY in the runner's "
                "environment (the Modal secret)"
            )
        return cls(url, key, buckets, limits=limits)

    async def read(self, path: str, owner: UUID | None, *, log: Log | None = None) -> Fetched:
        """The file at `path` (a `StoragePath`), if it is in `owner`'s folder."""
        try:
            return await self._read(path, owner)
        except OutboundError as error:
            (log or _log).warning("storage read not done", error=str(error), **error.detail)
            raise

    async def _read(self, path: str, owner: UUID | None) -> Fetched:
        try:
            target = parse_storage_path(path)
        except ValueError as exc:
            raise Refused(str(exc), path=path) from exc
        if target.bucket not in self.buckets:
            readable = ", ".join(sorted(self.buckets)) or "none"
            raise Refused(
                f"storage_path must be in a bucket this job type reads ({readable})", path=path
            )
        if owner is None:
            raise Refused(
                "storage_path can only be read for a job that belongs to a user", path=path
            )
        if target.owner != owner:
            raise Refused(
                "storage_path must be in your own folder: <bucket>/<your user id>/<name>",
                path=path,
                owner=str(owner),
            )
        content_types: list[str] = []

        async def remember_type(response: httpx.Response) -> None:
            content_types.append(_media_type(response))

        # Redirects are not followed: the key must reach SUPABASE_URL and nothing else.
        async with _client(
            self.limits, self.verify, event_hooks={"response": [remember_type]}
        ) as http:
            client = await create_async_client(
                self.url,
                self.service_key,
                AsyncClientOptions(
                    httpx_client=http, auto_refresh_token=False, persist_session=False
                ),
            )
            detail = {"bucket": target.bucket, "key": target.key}
            try:
                async with asyncio.timeout(self.limits.total_seconds):
                    body = await client.storage.from_(target.bucket).download(target.key)
            except StorageApiError as exc:
                status = str(exc.status)
                if status.isdigit() and 400 <= int(status) < 500:
                    raise Unavailable(
                        "the file is not available in Storage", status=status, **detail
                    ) from exc
                raise Failed(
                    "reading the file from Storage failed",
                    status=status,
                    cause=str(exc.message),
                    **detail,
                ) from exc
            except _TooLarge as exc:
                raise Refused(
                    f"the file is over the size limit ({self.limits.max_bytes} bytes)",
                    declared=exc.declared,
                    **detail,
                ) from exc
            except _Encoded as exc:
                raise Failed(
                    "reading the file from Storage failed", encoding=exc.encoding, **detail
                ) from exc
            except (TimeoutError, httpx.TimeoutException) as exc:
                raise Failed("reading the file from Storage timed out", **detail) from exc
            except httpx.HTTPError as exc:
                raise Failed(
                    "reading the file from Storage failed", cause=repr(exc), **detail
                ) from exc
        return Fetched(body, content_types[-1] if content_types else "application/octet-stream")
