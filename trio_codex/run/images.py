"""Turn client image parts into private files that Codex reads with ``--image <file>``.

Chat ``image_url`` parts and Responses ``input_image`` parts carry a URL; the request layer
collects each one as an :class:`ImageRef` (the URL plus the ``param`` path that names the part,
e.g. ``messages[1].content[2].image_url``), runs :func:`check_image_url` on it while validating,
and later calls :func:`materialize_images` with a per-request private directory.

What is accepted, and what every refusal is (always :class:`InvalidRequestError` with the part's
``param``):

* ``data:image/<type>;base64,<data>`` URLs: decoded, capped at ``ImagePolicy.max_bytes`` decoded
  bytes, and the bytes must start with the magic number of PNG, JPEG, GIF (87a/89a) or WebP.
  The file extension follows the detected type, never the declared one.
* ``http:``/``https:`` URLs, only when ``ImagePolicy.allow_fetch`` is set: fetched as described in
  :func:`materialize_images` (public addresses only, pinned connection, time limit, size cap,
  at most :data:`MAX_REDIRECTS` redirects, each hop checked again, same magic check).
* Everything else (``file://``, other schemes, bare or relative local paths) is refused.

Refusal codes:

``invalid_image``
    The part is not a usable image: malformed ``data:`` URL, not base64, a declared media type
    that is not ``image/*``, empty or undecodable data, bytes that are not PNG/JPEG/GIF/WebP,
    an http(s) URL without a host, a fetch that failed (DNS, connection, non-200 status,
    too many redirects) or did not finish within ``ImagePolicy.fetch_timeout``.
``image_too_large``
    The decoded or downloaded image exceeds ``ImagePolicy.max_bytes``.
``too_many_images``
    More than ``ImagePolicy.max_count`` images in one request (``param`` names the first part
    over the cap); checked before any image is decoded or written.
``image_url_not_allowed``
    ``file://`` URLs, local paths, schemes other than ``data``/``http``/``https``, http(s) URLs
    while fetching is disabled, and destinations (or redirect targets) that resolve to any
    non-public address.

``httpx`` is imported only when a fetch actually happens, so this module imports without it.
"""

from __future__ import annotations

import base64
import binascii
import ipaddress
import os
import re
import urllib.parse
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Protocol

import trio

from trio_codex.errors import InvalidRequestError, ServiceError

if TYPE_CHECKING:
    from pathlib import Path

    import httpx

__all__ = [
    "MAX_REDIRECTS",
    "ImagePolicy",
    "ImageRef",
    "check_image_count",
    "check_image_url",
    "materialize_images",
    "sniff_image_type",
]

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
AddressFilter = Callable[[IPAddress], bool]
"""Returns True when a resolved address may be connected to."""

MAX_REDIRECTS: Final = 3
"""Redirects followed per fetched image; each hop gets every check the first URL got."""

_EXTENSIONS: Final = {"png": "png", "jpeg": "jpg", "gif": "gif", "webp": "webp"}
_REDIRECT_STATUSES: Final = frozenset({301, 302, 303, 307, 308})
_SCHEME_RE: Final = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*):")
_NAT64_WELL_KNOWN: Final = ipaddress.IPv6Network("64:ff9b::/96")
_NAT64_LOCAL_USE: Final = ipaddress.IPv6Network("64:ff9b:1::/48")
#: Special-purpose blocks (IANA registries) that ``ipaddress.is_global`` lets through on some
#: Python versions: none of them holds a public image server.
_NOT_GLOBAL: Final[tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]] = (
    ipaddress.IPv4Network("0.0.0.0/8"),
    ipaddress.IPv4Network("100.64.0.0/10"),  # shared address space (CGNAT)
    ipaddress.IPv4Network("192.0.0.0/24"),  # IETF protocol assignments (dummy, NAT64 discovery)
    ipaddress.IPv4Network("192.0.2.0/24"),  # TEST-NET-1
    ipaddress.IPv4Network("192.88.99.0/24"),  # deprecated 6to4 relay anycast
    ipaddress.IPv4Network("198.18.0.0/15"),  # benchmarking
    ipaddress.IPv4Network("198.51.100.0/24"),  # TEST-NET-2
    ipaddress.IPv4Network("203.0.113.0/24"),  # TEST-NET-3
    ipaddress.IPv4Network("240.0.0.0/4"),  # reserved, broadcast
    ipaddress.IPv6Network("100::/64"),  # discard-only
    ipaddress.IPv6Network("100:0:0:1::/64"),  # dummy prefix
    ipaddress.IPv6Network("2001:db8::/32"),  # documentation
    ipaddress.IPv6Network("3fff::/20"),  # documentation (RFC 9637)
    ipaddress.IPv6Network("5f00::/16"),  # SRv6 SIDs
    ipaddress.IPv6Network("fc00::/7"),  # unique local
    ipaddress.IPv6Network("fe80::/10"),  # link-local
    ipaddress.IPv6Network("fec0::/10"),  # deprecated site-local
    ipaddress.IPv6Network("ff00::/8"),  # multicast
)

_INVALID: Final = "invalid_image"
_TOO_LARGE: Final = "image_too_large"
_NOT_ALLOWED: Final = "image_url_not_allowed"


class ImageRef(Protocol):
    """One image part as the request layer collected it (``openai.prompt.ImagePart``): its URL
    and the request path that names it in refusals (e.g. ``messages[0].content[1].image_url``)."""

    @property
    def url(self) -> str: ...

    @property
    def param(self) -> str: ...


@dataclass(frozen=True)
class ImagePolicy:
    """Image limits: size cap (decoded or downloaded), number of images per request, whether
    http(s) is fetched, deadline."""

    max_bytes: int = 20 * 1024 * 1024
    allow_fetch: bool = False
    fetch_timeout: float = 10.0
    #: Images per request (each is a file and an ``--image`` argument of Codex).
    max_count: int = 16


def sniff_image_type(data: bytes) -> str | None:
    """The image type the leading bytes prove ("png", "jpeg", "gif", "webp"), else None."""
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if data.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if data.startswith((b"GIF87a", b"GIF89a")):
        return "gif"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "webp"
    return None


def check_image_count(refs: Sequence[ImageRef], policy: ImagePolicy) -> None:
    """Refuse more than ``policy.max_count`` images (400 ``too_many_images`` naming the first
    part over the cap). Run it before anything is decoded, fetched or written: a request of
    thousands of tiny images would otherwise write thousands of files and pass the kernel's
    argv limit when Codex starts."""
    if len(refs) > policy.max_count:
        ref = refs[policy.max_count]
        raise _refuse(
            ref,
            "too_many_images",
            f"The request has {len(refs)} images; this server accepts at most "
            f"{policy.max_count} per request.",
        )


def check_image_url(ref: ImageRef, policy: ImagePolicy) -> None:
    """Pure, synchronous pre-check run while validating the request.

    Refuses ``file://`` URLs, local paths and other schemes, http(s) URLs while fetching is
    disabled (or whose host is a literal non-public IP address), malformed ``data:`` URLs
    (header, media type, base64, magic number) and over-size ``data:`` URLs (estimated from the
    base64 length before anything is decoded). Raises :class:`InvalidRequestError`; returns
    None when the URL may be passed to :func:`materialize_images`, which checks everything again.
    """
    _check(ref, policy, _is_public_address)


async def materialize_images(
    refs: Sequence[ImageRef], directory: Path, policy: ImagePolicy
) -> list[Path]:
    """Writes every image into ``directory`` (already created, private); returns paths in order.

    Files are named ``image-<n>.<ext>`` with ``n`` counting from 1 in the order of ``refs`` and
    ``ext`` from the sniffed bytes (``png``, ``jpg``, ``gif``, ``webp``); each is created new
    (``O_EXCL``, no symlink followed) with mode 0600. Images are processed one after another.

    Fetching (only with ``policy.allow_fetch``) resolves the host once with
    ``trio.socket.getaddrinfo`` and refuses the destination if *any* resolved address is
    loopback, private, link-local, multicast, reserved, unspecified or otherwise not global
    (IPv4 embedded in IPv6 as mapped, 6to4, Teredo or NAT64 is checked too). Against DNS
    rebinding the request is then sent to the first checked address itself: the URL's host is
    replaced by that IP literal, the ``Host`` header keeps the original host (and port), and for
    https the ``sni_hostname`` request extension makes TLS send SNI for, and verify the
    certificate against, the original name. Nothing resolves the name a second time. The request
    goes through a bare ``httpx.AsyncHTTPTransport`` (no ``AsyncClient``): no proxy, whether from
    the environment or otherwise, so the connection cannot be routed elsewhere; no cookies, no
    credentials (userinfo is dropped); no redirect handling of its own; a new transport for every
    hop, so no connection is reused across hosts; and ``Accept-Encoding: identity`` (any other
    encoding in the answer is refused). Up to :data:`MAX_REDIRECTS` redirects are followed by
    hand, each target checked like the original URL. The raw body is streamed and the fetch
    stops as soon as it exceeds ``policy.max_bytes``; the whole fetch of one image
    (resolution, every hop, body) must finish within ``policy.fetch_timeout`` seconds (a trio
    deadline around all of it; httpx's own per-operation timeouts are set to the same value).

    On any refusal raises :class:`InvalidRequestError`; files already written stay in
    ``directory`` (the caller removes the whole directory in every outcome).
    """
    return await _materialize_images(refs, directory, policy, address_filter=_is_public_address)


# -- internals --------------------------------------------------------------------------------


async def _materialize_images(
    refs: Sequence[ImageRef],
    directory: Path,
    policy: ImagePolicy,
    *,
    address_filter: AddressFilter,
) -> list[Path]:
    """:func:`materialize_images` with the address check injectable (tests allow loopback)."""
    paths: list[Path] = []
    for number, ref in enumerate(refs, start=1):
        if _classify(ref) == "data":
            data = await trio.to_thread.run_sync(_decode_data_url, ref, policy)
        else:
            _check_http_url(ref, policy, address_filter)
            data = await _fetch(ref, policy, address_filter)
        kind = sniff_image_type(data)
        if kind is None:  # _decode_data_url and _fetch already refuse this; belt and braces
            raise _refuse(ref, _INVALID, "The image data is not a PNG, JPEG, GIF or WebP image.")
        path = directory / f"image-{number}.{_EXTENSIONS[kind]}"
        await trio.to_thread.run_sync(_write_private, path, data)
        paths.append(path)
    return paths


def _refuse(ref: ImageRef, code: str, message: str) -> InvalidRequestError:
    return InvalidRequestError(message, param=ref.param, code=code)


def _check(ref: ImageRef, policy: ImagePolicy, address_filter: AddressFilter) -> None:
    if _classify(ref) == "data":
        _decode_data_url(ref, policy)
    else:
        _check_http_url(ref, policy, address_filter)


def _classify(ref: ImageRef) -> str:
    """Returns "data" or "http"; refuses every other scheme and every local path."""
    url = ref.url
    if not url:
        raise _refuse(ref, _INVALID, "The image URL is empty.")
    match = _SCHEME_RE.match(url)
    scheme = match.group(1).lower() if match else None
    if scheme == "data":
        return "data"
    if scheme in {"http", "https"}:
        return "http"
    if scheme == "file":
        raise _refuse(
            ref, _NOT_ALLOWED, "file:// image URLs are not allowed; send the image as a data: URL."
        )
    if scheme is None or len(scheme) == 1:  # no scheme, or a Windows drive letter
        raise _refuse(
            ref, _NOT_ALLOWED, "Local file paths are not allowed as images; send a data: URL."
        )
    raise _refuse(
        ref,
        _NOT_ALLOWED,
        f"{scheme}: image URLs are not allowed; use a data: URL or an http(s) URL.",
    )


def _decode_data_url(ref: ImageRef, policy: ImagePolicy) -> bytes:
    """The decoded bytes of a ``data:`` URL, after every check; refuses otherwise."""
    header, comma, payload = ref.url[len("data:") :].partition(",")
    if not comma:
        raise _refuse(ref, _INVALID, "The data: URL has no comma separating header and data.")
    params = [part.strip().lower() for part in header.split(";")]
    media_type = params[0]
    if len(params) < 2 or params[-1] != "base64":
        raise _refuse(ref, _INVALID, "Only base64-encoded data: URLs are supported for images.")
    if not media_type.startswith("image/") or media_type == "image/":
        shown = media_type or "none"
        raise _refuse(
            ref, _INVALID, f"The data: URL declares media type {shown!r}, which is not an image."
        )
    if not payload:
        raise _refuse(ref, _INVALID, "The data: URL contains no image data.")
    estimate = len(payload.rstrip("=")) * 3 // 4
    if estimate > policy.max_bytes:
        raise _too_large(ref, policy)
    padding = -len(payload) % 4
    if padding == 3:
        raise _refuse(ref, _INVALID, "The data: URL's base64 data is invalid.")
    try:
        data = base64.b64decode(payload + "=" * padding, validate=True)
    except (binascii.Error, ValueError):
        raise _refuse(ref, _INVALID, "The data: URL's base64 data is invalid.") from None
    if not data:
        raise _refuse(ref, _INVALID, "The data: URL contains no image data.")
    if len(data) > policy.max_bytes:
        raise _too_large(ref, policy)
    if sniff_image_type(data) is None:
        raise _refuse(ref, _INVALID, "The image data is not a PNG, JPEG, GIF or WebP image.")
    return data


def _too_large(ref: ImageRef, policy: ImagePolicy) -> InvalidRequestError:
    return _refuse(ref, _TOO_LARGE, f"The image is larger than the {policy.max_bytes}-byte limit.")


def _check_http_url(ref: ImageRef, policy: ImagePolicy, address_filter: AddressFilter) -> None:
    """Synchronous checks of an http(s) URL; the authoritative ones happen in :func:`_fetch`."""
    if not policy.allow_fetch:
        raise _refuse(
            ref,
            _NOT_ALLOWED,
            "Fetching images from http(s) URLs is disabled on this server; send a data: URL.",
        )
    try:
        parts = urllib.parse.urlsplit(ref.url)
        host = parts.hostname
        _ = parts.port  # raises ValueError on a malformed port
    except ValueError:
        raise _refuse(ref, _INVALID, "The image URL is malformed.") from None
    if not host:
        raise _refuse(ref, _INVALID, "The image URL has no host.")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        _check_host_name(ref, host)
        return  # a name: its addresses are checked after resolution
    if not address_filter(literal):
        raise _forbidden_destination(ref)


def _check_host_name(ref: ImageRef, host: str) -> None:
    """Refuse a host name the resolver cannot encode (a label over 63 characters, an empty
    label): the IDNA codec would raise ``UnicodeError`` out of ``getaddrinfo``."""
    try:
        host.encode("idna")
    except UnicodeError:
        raise _refuse(ref, _INVALID, "The image URL's host is not a valid DNS name.") from None


def _forbidden_destination(ref: ImageRef) -> InvalidRequestError:
    return _refuse(
        ref,
        _NOT_ALLOWED,
        "The image URL's host is or resolves to a non-public (loopback, private, link-local, "
        "multicast or reserved) address, which is not allowed.",
    )


def _is_public_address(address: IPAddress) -> bool:
    """True only for globally routable unicast addresses, also for IPv4 embedded in IPv6:
    ``is_global`` and in none of the special-purpose blocks it misses (``_NOT_GLOBAL``)."""
    candidates: list[IPAddress] = [address]
    if isinstance(address, ipaddress.IPv6Address):
        if address in _NAT64_LOCAL_USE:
            return False
        if address.ipv4_mapped is not None:
            candidates.append(address.ipv4_mapped)
        if address.sixtofour is not None:
            candidates.append(address.sixtofour)
        if address.teredo is not None:
            candidates.extend(address.teredo)
        if address in _NAT64_WELL_KNOWN:
            candidates.append(ipaddress.IPv4Address(int(address) & 0xFFFFFFFF))
    return not any(
        candidate.is_loopback
        or candidate.is_private
        or candidate.is_link_local
        or candidate.is_multicast
        or candidate.is_reserved
        or candidate.is_unspecified
        or not candidate.is_global
        or any(
            candidate in network for network in _NOT_GLOBAL if network.version == candidate.version
        )
        for candidate in candidates
    )


async def _fetch(ref: ImageRef, policy: ImagePolicy, address_filter: AddressFilter) -> bytes:
    """Download one image under the whole-fetch deadline, following at most MAX_REDIRECTS."""
    try:
        import httpx  # optional: only needed when fetching is enabled
    except ImportError:  # pragma: no cover - depends on the installation
        raise ServiceError("Image fetching is enabled but httpx is not installed.") from None

    try:
        url = httpx.URL(ref.url)
    except httpx.InvalidURL:
        raise _refuse(ref, _INVALID, "The image URL is malformed.") from None
    try:
        with trio.fail_after(policy.fetch_timeout):
            for _hop in range(MAX_REDIRECTS + 1):
                body, location = await _fetch_hop(url, ref, policy, address_filter)
                if location is None:
                    return body
                url = location
    except trio.TooSlowError:
        raise _refuse(
            ref,
            _INVALID,
            f"Fetching the image did not finish within {policy.fetch_timeout:g} seconds.",
        ) from None
    raise _refuse(ref, _INVALID, f"The image URL redirected more than {MAX_REDIRECTS} times.")


async def _fetch_hop(
    url: httpx.URL,
    ref: ImageRef,
    policy: ImagePolicy,
    address_filter: AddressFilter,
) -> tuple[bytes, httpx.URL | None]:
    """One request: (body, None) for the image, or (b"", target) for a redirect to follow."""
    import httpx  # already imported (and checked) by _fetch

    if url.scheme not in {"http", "https"}:
        raise _refuse(ref, _NOT_ALLOWED, "The image URL redirected to a non-http(s) URL.")
    host = url.raw_host.decode("ascii")
    if not host:
        raise _refuse(ref, _INVALID, "The image URL has no host.")
    _check_host_name(ref, host)
    port = url.port if url.port is not None else (443 if url.scheme == "https" else 80)
    addresses = await _resolve(ref, host, port)
    if not all(address_filter(address) for address in addresses):
        raise _forbidden_destination(ref)
    pinned = url.copy_with(host=str(_without_scope(addresses[0])), userinfo=b"")
    headers = {
        "Host": url.netloc.decode("ascii"),
        "Accept": "image/png, image/jpeg, image/gif, image/webp",
        "Accept-Encoding": "identity",
        "User-Agent": "trio-codex",
    }
    extensions: dict[str, Any] = {"timeout": httpx.Timeout(policy.fetch_timeout).as_dict()}
    if url.scheme == "https":
        extensions["sni_hostname"] = host
    request = httpx.Request("GET", pinned, headers=headers, extensions=extensions)
    try:
        # The transport alone: no client-side redirect, cookie, auth or proxy handling.
        async with httpx.AsyncHTTPTransport(trust_env=False, retries=0) as transport:
            response = await transport.handle_async_request(request)
            response.request = request
            try:
                return await _read_response(ref, url, response, policy)
            finally:
                await response.aclose()
    except (httpx.HTTPError, httpx.InvalidURL, httpx.StreamError, OSError):
        raise _refuse(ref, _INVALID, "The image could not be fetched.") from None


async def _read_response(
    ref: ImageRef, url: httpx.URL, response: httpx.Response, policy: ImagePolicy
) -> tuple[bytes, httpx.URL | None]:
    if response.status_code in _REDIRECT_STATUSES:
        location = response.headers.get("location")
        if not location:
            raise _refuse(ref, _INVALID, "The image URL redirected without a Location.")
        return b"", url.join(location)
    if response.status_code != 200:
        raise _refuse(
            ref, _INVALID, f"Fetching the image failed with HTTP status {response.status_code}."
        )
    encoding = response.headers.get("content-encoding", "identity").strip().lower()
    if encoding not in {"", "identity"}:
        raise _refuse(
            ref, _INVALID, "The image was sent with a content encoding, which is refused."
        )
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > policy.max_bytes:
        raise _too_large(ref, policy)
    body = await _read_capped(response, policy.max_bytes)
    if body is None:
        raise _too_large(ref, policy)
    if sniff_image_type(body) is None:
        raise _refuse(ref, _INVALID, "The fetched data is not a PNG, JPEG, GIF or WebP image.")
    return body, None


async def _read_capped(response: httpx.Response, max_bytes: int) -> bytes | None:
    """The raw body, or None as soon as more than ``max_bytes`` have arrived.

    Raw bytes as sent (identity was asked for; any other encoding was refused), so the cap counts
    what crosses the wire and nothing is decompressed. Past the cap the response is closed and
    the iteration is resumed once: the closed connection ends it from the innermost httpcore
    generator outwards, so the chain of async generators behind ``aiter_raw`` finishes instead of
    being abandoned half-way (which trio reports as a ResourceWarning, and which ``aclosing`` on
    the outer generator alone does not prevent).
    """
    import httpx  # already imported (and checked) by _fetch

    body = bytearray()
    try:
        async for chunk in response.aiter_raw():
            if len(body) > max_bytes:
                continue  # the iteration is ending: nothing more is read
            body += chunk
            if len(body) > max_bytes:
                await response.aclose()
    except (httpx.HTTPError, httpx.StreamError):
        if len(body) <= max_bytes:
            raise
    return None if len(body) > max_bytes else bytes(body)


async def _resolve(ref: ImageRef, host: str, port: int) -> list[IPAddress]:
    """Every address ``host`` resolves to, in resolver order, without duplicates."""
    try:
        infos = await trio.socket.getaddrinfo(host, port, type=trio.socket.SOCK_STREAM)
    except (OSError, UnicodeError):  # socket.gaierror included; UnicodeError: IDNA
        raise _refuse(ref, _INVALID, "The image URL's host could not be resolved.") from None
    addresses: list[IPAddress] = []
    for *_, sockaddr in infos:
        try:
            address = ipaddress.ip_address(str(sockaddr[0]))
        except ValueError:  # not an IPv4/IPv6 socket address
            continue
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise _refuse(ref, _INVALID, "The image URL's host could not be resolved.")
    return addresses


def _without_scope(address: IPAddress) -> IPAddress:
    if isinstance(address, ipaddress.IPv6Address):
        return ipaddress.IPv6Address(int(address))
    return address


def _write_private(path: Path, data: bytes) -> None:
    """Create ``path`` new with mode 0600 (never through a symlink) and write ``data``."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags | getattr(os, "O_CLOEXEC", 0), 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)
