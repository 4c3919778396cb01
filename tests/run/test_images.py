"""Tests for trio_codex.run.images: data URLs, refused URLs, and guarded http(s) fetching.

Fetching tests talk only to a tiny HTTP server on a loopback address started by the test; they
reach it through the internal ``_materialize_images`` with an address filter that admits
loopback addresses *only*, so nothing here can connect anywhere else. Tests of the public
``materialize_images`` with fetching enabled assert that no request is ever sent.
"""

from __future__ import annotations

import base64
import ipaddress
import os
import socket
import stat
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any

import httpx
import pytest
import trio

from trio_codex.errors import InvalidRequestError
from trio_codex.openai.prompt import ImagePart
from trio_codex.run import images
from trio_codex.run.images import (
    ImagePolicy,
    check_image_url,
    materialize_images,
    sniff_image_type,
)

if TYPE_CHECKING:
    from pathlib import Path

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
    "AAAABJRU5ErkJggg=="
)
JPEG = (
    b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    b"\xff\xdb\x00C\x00" + bytes(range(1, 65)) + b"\xff\xd9"
)
GIF89 = (
    b"GIF89a\x01\x00\x01\x00\x80\x00\x00\xff\xff\xff\x00\x00\x00!\xf9\x04\x01\x00\x00\x00\x00"
    b",\x00\x00\x00\x00\x01\x00\x01\x00\x00\x02\x02D\x01\x00;"
)
GIF87 = b"GIF87a" + GIF89[6:]
WEBP = base64.b64decode("UklGRhoAAABXRUJQVlA4TA0AAAAvAAAAEAcQERGIiP4HAA==")

PARAM = "messages[1].content[2].image_url"
FETCH = ImagePolicy(allow_fetch=True, fetch_timeout=5.0)


def data_url(payload: bytes, media_type: str = "image/png") -> str:
    return f"data:{media_type};base64,{base64.b64encode(payload).decode()}"


def ref(url: str) -> ImagePart:
    return ImagePart(url=url, param=PARAM)


def loopback_only(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    return address.is_loopback


async def fetch_via_loopback(urls: list[str], tmp_path: Path, policy: ImagePolicy) -> list[Path]:
    return await images._materialize_images(
        [ref(url) for url in urls], tmp_path, policy, address_filter=loopback_only
    )


# -- a tiny HTTP/1.1 server on loopback --------------------------------------------------------


@dataclass
class Route:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    content_length: bool = True
    hang: bool = False
    endless: bool = False


@dataclass
class TinyServer:
    host: str
    port: int = 0
    routes: dict[str, Route] = field(default_factory=dict)
    requests: list[dict[str, str]] = field(default_factory=list)

    def url(self, path: str, host: str | None = None) -> str:
        name = host or (f"[{self.host}]" if ":" in self.host else self.host)
        return f"http://{name}:{self.port}{path}"

    async def handle(self, stream: trio.SocketStream) -> None:
        try:
            await self._handle(stream)
        except (trio.BrokenResourceError, trio.ClosedResourceError):
            pass
        finally:
            await stream.aclose()

    async def _handle(self, stream: trio.SocketStream) -> None:
        raw = b""
        while b"\r\n\r\n" not in raw:
            chunk = await stream.receive_some(65536)
            if not chunk:
                return
            raw += chunk
        request_line, *header_lines = raw.split(b"\r\n\r\n")[0].decode("latin-1").split("\r\n")
        seen = {"path": request_line.split(" ")[1]}
        for line in header_lines:
            name, _, value = line.partition(":")
            seen[name.strip().lower()] = value.strip()
        self.requests.append(seen)
        route = self.routes.get(seen["path"], Route(status=404))
        if route.hang:
            await trio.sleep_forever()
        head = [f"HTTP/1.1 {route.status} X", "Connection: close"]
        head += [f"{name}: {value}" for name, value in route.headers.items()]
        if route.content_length:
            head.append(f"Content-Length: {len(route.body)}")
        await stream.send_all("\r\n".join(head).encode() + b"\r\n\r\n" + route.body)
        while route.endless:
            await stream.send_all(b"\0" * 65536)


async def start_server(nursery: trio.Nursery, host: str = "127.0.0.1") -> TinyServer:
    server = TinyServer(host=host)
    listeners = await nursery.start(partial(trio.serve_tcp, server.handle, 0, host=host))
    server.port = listeners[0].socket.getsockname()[1]
    return server


@pytest.fixture
async def server(nursery: trio.Nursery) -> TinyServer:
    return await start_server(nursery)


def assert_refused(exc: InvalidRequestError, code: str) -> None:
    assert exc.code == code
    assert exc.param == PARAM
    assert exc.status_code == 400
    assert exc.message.endswith(".")


# -- sniffing and data URLs -------------------------------------------------------------------


@pytest.mark.parametrize(
    ("payload", "kind"),
    [(PNG, "png"), (JPEG, "jpeg"), (GIF89, "gif"), (GIF87, "gif"), (WEBP, "webp")],
)
def test_sniff_recognises_each_format(payload: bytes, kind: str) -> None:
    """sniff_image_type names each supported format from its magic number."""
    assert sniff_image_type(payload) == kind


@pytest.mark.parametrize(
    "payload", [b"", b"hello", b"RIFF\x00\x00\x00\x00WAVE", b"GIF90a", b"\x89PNG", b"<svg/>"]
)
def test_sniff_rejects_other_bytes(payload: bytes) -> None:
    """sniff_image_type returns None for anything that is not PNG, JPEG, GIF or WebP."""
    assert sniff_image_type(payload) is None


@pytest.mark.parametrize(
    ("payload", "media_type", "name"),
    [
        (PNG, "image/png", "image-1.png"),
        (JPEG, "image/jpeg", "image-1.jpg"),
        (GIF89, "image/gif", "image-1.gif"),
        (WEBP, "image/webp", "image-1.webp"),
    ],
)
async def test_data_url_round_trip(
    tmp_path: Path, payload: bytes, media_type: str, name: str
) -> None:
    """A data URL of each format is written byte-for-byte as image-1.<ext> with mode 0600."""
    url = data_url(payload, media_type)
    check_image_url(ref(url), ImagePolicy())
    [path] = await materialize_images([ref(url)], tmp_path, ImagePolicy())
    assert path == tmp_path / name
    assert path.read_bytes() == payload
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


async def test_extension_follows_detected_type(tmp_path: Path) -> None:
    """JPEG bytes declared as image/png are accepted and saved with the .jpg extension."""
    [path] = await materialize_images([ref(data_url(JPEG, "image/png"))], tmp_path, ImagePolicy())
    assert path.name == "image-1.jpg"


async def test_several_images_keep_their_order(tmp_path: Path) -> None:
    """Images are numbered from 1 in the order given."""
    refs = [ref(data_url(GIF89)), ref(data_url(PNG)), ref(data_url(WEBP))]
    paths = await materialize_images(refs, tmp_path, ImagePolicy())
    assert [p.name for p in paths] == ["image-1.gif", "image-2.png", "image-3.webp"]


async def test_unpadded_base64_is_accepted(tmp_path: Path) -> None:
    """Base64 with its '=' padding left off still decodes."""
    url = data_url(PNG).rstrip("=")
    [path] = await materialize_images([ref(url)], tmp_path, ImagePolicy())
    assert path.read_bytes() == PNG


async def test_refusal_keeps_files_already_written(tmp_path: Path) -> None:
    """A refusal of the second image leaves the first one's file in place and names the part."""
    with pytest.raises(InvalidRequestError) as info:
        await materialize_images(
            [ref(data_url(PNG)), ref(data_url(b"not an image"))], tmp_path, ImagePolicy()
        )
    assert_refused(info.value, "invalid_image")
    assert [p.name for p in tmp_path.iterdir()] == ["image-1.png"]


REFUSED_DATA_URLS = [
    pytest.param(data_url(b"definitely not an image"), "invalid_image", id="wrong-bytes"),
    pytest.param(data_url(b"<svg xmlns='x'/>", "image/svg+xml"), "invalid_image", id="svg"),
    pytest.param("data:image/png;base64,iVBOR$$$=", "invalid_image", id="bad-base64"),
    pytest.param("data:image/png;base64,iVBORw0KG", "invalid_image", id="bad-base64-length"),
    pytest.param("data:image/png;base64,", "invalid_image", id="empty"),
    pytest.param("data:image/png;base64,====", "invalid_image", id="only-padding"),
    pytest.param("data:image/png;base64", "invalid_image", id="no-comma"),
    pytest.param("data:image/png,%89PNG", "invalid_image", id="not-base64"),
    pytest.param(data_url(PNG, "text/plain"), "invalid_image", id="text-type"),
    pytest.param(data_url(PNG, ""), "invalid_image", id="no-type"),
    pytest.param(data_url(PNG, "image/"), "invalid_image", id="no-subtype"),
    pytest.param(data_url(PNG + b"\0" * 200), "image_too_large", id="oversized"),
    pytest.param("data:image/png;base64," + "A" * 400, "image_too_large", id="oversized-estimate"),
]
SMALL = ImagePolicy(max_bytes=100)


@pytest.mark.parametrize(("url", "code"), REFUSED_DATA_URLS)
def test_check_refuses_bad_data_urls(url: str, code: str) -> None:
    """check_image_url refuses malformed, non-image and over-size data URLs with the right code."""
    with pytest.raises(InvalidRequestError) as info:
        check_image_url(ref(url), SMALL)
    assert_refused(info.value, code)


@pytest.mark.parametrize(("url", "code"), REFUSED_DATA_URLS)
async def test_materialize_refuses_bad_data_urls(tmp_path: Path, url: str, code: str) -> None:
    """materialize_images refuses the same data URLs on its own and writes nothing."""
    with pytest.raises(InvalidRequestError) as info:
        await materialize_images([ref(url)], tmp_path, SMALL)
    assert_refused(info.value, code)
    assert list(tmp_path.iterdir()) == []


def test_size_cap_is_inclusive() -> None:
    """An image of exactly max_bytes decoded bytes is accepted."""
    check_image_url(ref(data_url(PNG)), ImagePolicy(max_bytes=len(PNG)))
    with pytest.raises(InvalidRequestError) as info:
        check_image_url(ref(data_url(PNG)), ImagePolicy(max_bytes=len(PNG) - 1))
    assert_refused(info.value, "image_too_large")


def test_data_scheme_is_case_insensitive() -> None:
    """DATA:IMAGE/PNG;BASE64 is read like its lower-case spelling."""
    check_image_url(ref("DATA:IMAGE/PNG;BASE64," + base64.b64encode(PNG).decode()), ImagePolicy())


# -- URLs that are never allowed --------------------------------------------------------------

NOT_ALLOWED_URLS = [
    pytest.param("file:///etc/passwd", id="file-url"),
    pytest.param("FILE://localhost/etc/passwd", id="file-url-upper"),
    pytest.param("/etc/passwd", id="absolute-path"),
    pytest.param("images/cat.png", id="relative-path"),
    pytest.param("./cat.png", id="dot-path"),
    pytest.param("C:\\images\\cat.png", id="windows-path"),
    pytest.param("ftp://example.com/cat.png", id="ftp"),
    pytest.param("javascript:alert(1)", id="javascript"),
]


@pytest.mark.parametrize("url", NOT_ALLOWED_URLS)
@pytest.mark.parametrize("policy", [ImagePolicy(), FETCH], ids=["no-fetch", "fetch"])
async def test_local_and_other_urls_refused(
    tmp_path: Path, url: str, policy: ImagePolicy, no_http: list[httpx.Request]
) -> None:
    """file:// URLs, local paths and other schemes are refused as image_url_not_allowed."""
    with pytest.raises(InvalidRequestError) as info:
        check_image_url(ref(url), policy)
    assert_refused(info.value, "image_url_not_allowed")
    with pytest.raises(InvalidRequestError) as info:
        await materialize_images([ref(url)], tmp_path, policy)
    assert_refused(info.value, "image_url_not_allowed")


async def test_empty_url_refused(tmp_path: Path) -> None:
    """An empty URL is refused as invalid_image."""
    with pytest.raises(InvalidRequestError) as info:
        await materialize_images([ref("")], tmp_path, ImagePolicy())
    assert_refused(info.value, "invalid_image")


@pytest.mark.parametrize("url", ["http://example.com/cat.png", "https://example.com/cat.png"])
async def test_http_refused_when_fetching_disabled(
    tmp_path: Path, url: str, no_http: list[httpx.Request]
) -> None:
    """http(s) URLs are refused as image_url_not_allowed while fetching is disabled."""
    with pytest.raises(InvalidRequestError) as info:
        check_image_url(ref(url), ImagePolicy())
    assert_refused(info.value, "image_url_not_allowed")
    with pytest.raises(InvalidRequestError) as info:
        await materialize_images([ref(url)], tmp_path, ImagePolicy())
    assert_refused(info.value, "image_url_not_allowed")


# -- destinations that must never be contacted ------------------------------------------------

FORBIDDEN_HOSTS = [
    "http://127.0.0.1/cat.png",
    "http://localhost/cat.png",
    "http://10.0.0.1/cat.png",
    "http://169.254.169.254/latest/meta-data/",
    "http://[::1]/cat.png",
    "https://[::ffff:127.0.0.1]/cat.png",
    "http://192.168.1.1:8080/cat.png",
    "http://100.64.0.1/cat.png",
    "http://0.0.0.0/cat.png",
    "http://224.0.0.1/cat.png",
]


@pytest.mark.parametrize("url", FORBIDDEN_HOSTS)
async def test_non_public_destinations_refused_before_connecting(
    tmp_path: Path, url: str, no_http: list[httpx.Request]
) -> None:
    """With fetching enabled, hosts resolving to non-public addresses are refused, unsent."""
    with pytest.raises(InvalidRequestError) as info:
        await materialize_images([ref(url)], tmp_path, FETCH)
    assert_refused(info.value, "image_url_not_allowed")


@pytest.mark.parametrize(
    "url", ["http://127.0.0.1/x", "http://10.0.0.1/x", "http://[fe80::1]/x", "http://[::]/x"]
)
def test_check_refuses_non_public_literal_addresses(url: str) -> None:
    """check_image_url refuses an IP-literal host that is not public without resolving anything."""
    with pytest.raises(InvalidRequestError) as info:
        check_image_url(ref(url), FETCH)
    assert_refused(info.value, "image_url_not_allowed")


def test_check_passes_public_urls_when_fetching() -> None:
    """check_image_url accepts http(s) URLs with a name or public address when fetching is on."""
    check_image_url(ref("https://example.com/cat.png"), FETCH)
    check_image_url(ref("http://93.184.215.14:8080/cat.png"), FETCH)


@pytest.mark.parametrize("url", ["http:///cat.png", "http://example.com:99999/x", "http:cat"])
def test_check_refuses_http_urls_without_host(url: str) -> None:
    """check_image_url refuses http URLs with no host or a malformed port as invalid_image."""
    with pytest.raises(InvalidRequestError) as info:
        check_image_url(ref(url), FETCH)
    assert_refused(info.value, "invalid_image")


async def test_any_forbidden_resolved_address_refuses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_http: list[httpx.Request]
) -> None:
    """A name resolving to a public and a private address is refused as a whole."""

    async def fake_getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        assert host == "mixed.test"
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.215.14", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.1.2.3", port)),
        ]

    monkeypatch.setattr(trio.socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(InvalidRequestError) as info:
        await materialize_images([ref("http://mixed.test/cat.png")], tmp_path, FETCH)
    assert_refused(info.value, "image_url_not_allowed")


async def test_unresolvable_host_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_http: list[httpx.Request]
) -> None:
    """A host name that does not resolve is refused as invalid_image."""

    async def fake_getaddrinfo(*args: Any, **kwargs: Any) -> list[Any]:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(trio.socket, "getaddrinfo", fake_getaddrinfo)
    with pytest.raises(InvalidRequestError) as info:
        await materialize_images([ref("http://nowhere.test/cat.png")], tmp_path, FETCH)
    assert_refused(info.value, "invalid_image")


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("93.184.215.14", True),
        ("2606:2800:21f:cb07:6820:80da:af6b:8b2c", True),
        ("127.0.0.1", False),
        ("10.0.0.1", False),
        ("172.16.0.1", False),
        ("192.168.0.1", False),
        ("169.254.169.254", False),
        ("100.64.0.1", False),
        ("0.0.0.0", False),  # noqa: S104 - an address under test, nothing binds to it
        ("255.255.255.255", False),
        ("224.0.0.1", False),
        ("240.0.0.1", False),
        ("::1", False),
        ("::", False),
        ("fe80::1", False),
        ("fc00::1", False),
        ("ff02::1", False),
        ("::ffff:127.0.0.1", False),
        ("::ffff:10.0.0.1", False),
        ("2002:7f00:1::", False),
        ("2002:a00:1::", False),
        ("64:ff9b::a9fe:a9fe", False),
        ("64:ff9b:1::1", False),
        ("2001:0:4136:e378:8000:63bf:3fff:fdd2", False),
    ],
)
def test_public_address_filter(address: str, public: bool) -> None:
    """Only globally routable unicast addresses pass, including IPv4 embedded in IPv6."""
    assert images._is_public_address(ipaddress.ip_address(address)) is public


# -- fetching from a loopback test server -----------------------------------------------------


async def test_fetch_writes_the_image(tmp_path: Path, server: TinyServer) -> None:
    """A fetched image is written under the extension of its bytes, whatever its Content-Type."""
    server.routes["/cat"] = Route(body=WEBP, headers={"Content-Type": "image/png"})
    [path] = await fetch_via_loopback([server.url("/cat")], tmp_path, FETCH)
    assert path.name == "image-1.webp"
    assert path.read_bytes() == WEBP
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert server.requests[0]["accept-encoding"] == "identity"


async def test_fetch_without_content_length(tmp_path: Path, server: TinyServer) -> None:
    """A body delimited by connection close is read completely."""
    server.routes["/cat"] = Route(body=PNG, content_length=False)
    [path] = await fetch_via_loopback([server.url("/cat")], tmp_path, FETCH)
    assert path.read_bytes() == PNG


async def test_fetch_connects_to_the_checked_address(
    tmp_path: Path, server: TinyServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The name is resolved once and the request goes to that address with the Host header kept."""
    lookups: list[str] = []
    real_getaddrinfo = trio.socket.getaddrinfo

    async def rebinding_getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "rebind.test":
            lookups.append(host)
            if len(lookups) > 1:
                raise AssertionError("the host name was resolved a second time")
            return await real_getaddrinfo("127.0.0.1", port, *args, **kwargs)
        return await real_getaddrinfo(host, port, *args, **kwargs)

    monkeypatch.setattr(trio.socket, "getaddrinfo", rebinding_getaddrinfo)
    server.routes["/cat"] = Route(body=GIF89)
    [path] = await fetch_via_loopback([server.url("/cat", host="rebind.test")], tmp_path, FETCH)
    assert path.read_bytes() == GIF89
    assert lookups == ["rebind.test"]
    assert server.requests[0]["host"] == f"rebind.test:{server.port}"


async def test_fetch_resolves_localhost_when_allowed(tmp_path: Path, nursery: trio.Nursery) -> None:
    """With loopback admitted, http://localhost is fetched from its first resolved address."""
    infos = await trio.socket.getaddrinfo("localhost", 0, type=trio.socket.SOCK_STREAM)
    first = str(infos[0][4][0])
    assert ipaddress.ip_address(first).is_loopback
    server = await start_server(nursery, first)
    server.routes["/cat"] = Route(body=PNG)
    [path] = await fetch_via_loopback([server.url("/cat", host="localhost")], tmp_path, FETCH)
    assert path.read_bytes() == PNG
    assert server.requests[0]["host"] == f"localhost:{server.port}"


async def test_https_request_is_pinned_with_sni(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An https request targets the resolved IP, keeps Host and sets SNI to the original name."""
    sent: list[httpx.Request] = []

    async def fake_getaddrinfo(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        assert (host, port) == ("pics.test", 443)
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", ("127.0.0.1", port))]

    async def record_send(self: httpx.AsyncHTTPTransport, request: httpx.Request) -> None:
        sent.append(request)
        raise httpx.ConnectError("not connecting in this test", request=request)

    monkeypatch.setattr(trio.socket, "getaddrinfo", fake_getaddrinfo)
    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", record_send)
    with pytest.raises(InvalidRequestError) as info:
        await fetch_via_loopback(["https://user:pw@pics.test/cat.png"], tmp_path, FETCH)
    assert_refused(info.value, "invalid_image")
    [request] = sent
    assert str(request.url) == "https://127.0.0.1/cat.png"
    assert request.headers["host"] == "pics.test"
    assert request.extensions["sni_hostname"] == "pics.test"


async def test_fetched_non_image_refused(tmp_path: Path, server: TinyServer) -> None:
    """Fetched bytes that are not an image are refused as invalid_image."""
    server.routes["/cat"] = Route(body=b"<html>cat</html>", headers={"Content-Type": "image/png"})
    with pytest.raises(InvalidRequestError) as info:
        await fetch_via_loopback([server.url("/cat")], tmp_path, FETCH)
    assert_refused(info.value, "invalid_image")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("status", [204, 404, 500])
async def test_fetch_error_status_refused(tmp_path: Path, server: TinyServer, status: int) -> None:
    """A response other than 200 is refused as invalid_image."""
    server.routes["/cat"] = Route(status=status, body=PNG)
    with pytest.raises(InvalidRequestError) as info:
        await fetch_via_loopback([server.url("/cat")], tmp_path, FETCH)
    assert_refused(info.value, "invalid_image")


async def test_fetch_connection_refused(tmp_path: Path) -> None:
    """A server that refuses the connection yields invalid_image."""
    listener = trio.socket.socket()
    await listener.bind(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    listener.close()  # nothing listens on the port any more
    with pytest.raises(InvalidRequestError) as info:
        await fetch_via_loopback([f"http://127.0.0.1:{port}/cat"], tmp_path, FETCH)
    assert_refused(info.value, "invalid_image")


async def test_fetch_declared_length_over_cap(tmp_path: Path, server: TinyServer) -> None:
    """A Content-Length above max_bytes is refused as image_too_large."""
    server.routes["/big"] = Route(body=PNG + b"\0" * 200)
    with pytest.raises(InvalidRequestError) as info:
        await fetch_via_loopback([server.url("/big")], tmp_path, ImagePolicy(100, True, 5.0))
    assert_refused(info.value, "image_too_large")


async def test_fetch_streamed_body_over_cap(tmp_path: Path, server: TinyServer) -> None:
    """A body without Content-Length that never ends is cut off at the cap as image_too_large."""
    server.routes["/endless"] = Route(body=PNG, content_length=False, endless=True)
    policy = ImagePolicy(max_bytes=1024 * 1024, allow_fetch=True, fetch_timeout=30.0)
    with pytest.raises(InvalidRequestError) as info:
        await fetch_via_loopback([server.url("/endless")], tmp_path, policy)
    assert_refused(info.value, "image_too_large")


async def test_fetch_time_limit(tmp_path: Path, server: TinyServer) -> None:
    """A server that never answers is given up on after fetch_timeout as invalid_image."""
    server.routes["/slow"] = Route(hang=True)
    policy = ImagePolicy(allow_fetch=True, fetch_timeout=0.2)
    with trio.fail_after(10):
        with pytest.raises(InvalidRequestError) as info:
            await fetch_via_loopback([server.url("/slow")], tmp_path, policy)
    assert_refused(info.value, "invalid_image")
    assert "0.2 seconds" in info.value.message
    assert [r["path"] for r in server.requests] == ["/slow"]


async def test_fetch_follows_redirects(tmp_path: Path, server: TinyServer) -> None:
    """Up to three redirects, relative or absolute, are followed to the image."""
    server.routes["/a"] = Route(status=301, headers={"Location": "/b"})
    server.routes["/b"] = Route(status=302, headers={"Location": server.url("/c")})
    server.routes["/c"] = Route(status=307, headers={"Location": "d"})
    server.routes["/d"] = Route(body=JPEG)
    [path] = await fetch_via_loopback([server.url("/a")], tmp_path, FETCH)
    assert path.read_bytes() == JPEG
    assert [r["path"] for r in server.requests] == ["/a", "/b", "/c", "/d"]


async def test_fetch_too_many_redirects(tmp_path: Path, server: TinyServer) -> None:
    """A fourth redirect is not followed and the image is refused as invalid_image."""
    for step in range(5):
        server.routes[f"/{step}"] = Route(status=302, headers={"Location": f"/{step + 1}"})
    server.routes["/5"] = Route(body=PNG)
    with pytest.raises(InvalidRequestError) as info:
        await fetch_via_loopback([server.url("/0")], tmp_path, FETCH)
    assert_refused(info.value, "invalid_image")
    assert [r["path"] for r in server.requests] == ["/0", "/1", "/2", "/3"]


async def test_redirect_without_location(tmp_path: Path, server: TinyServer) -> None:
    """A redirect status without a Location header is refused as invalid_image."""
    server.routes["/a"] = Route(status=302)
    with pytest.raises(InvalidRequestError) as info:
        await fetch_via_loopback([server.url("/a")], tmp_path, FETCH)
    assert_refused(info.value, "invalid_image")


@pytest.mark.parametrize(
    "location",
    [
        "file:///etc/passwd",
        "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "http://10.0.0.1/cat.png",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00::1]/cat.png",
    ],
)
async def test_redirect_targets_are_checked(
    tmp_path: Path, server: TinyServer, location: str
) -> None:
    """Redirects to non-http(s) URLs or non-public hosts are refused without being followed."""
    server.routes["/a"] = Route(status=302, headers={"Location": location})
    with pytest.raises(InvalidRequestError) as info:
        await fetch_via_loopback([server.url("/a")], tmp_path, FETCH)
    assert_refused(info.value, "image_url_not_allowed")
    assert [r["path"] for r in server.requests] == ["/a"]


async def test_public_api_refuses_loopback_test_server(tmp_path: Path, server: TinyServer) -> None:
    """The public materialize_images never fetches from loopback, even with a server there."""
    server.routes["/cat"] = Route(body=PNG)
    with pytest.raises(InvalidRequestError) as info:
        await materialize_images([ref(server.url("/cat"))], tmp_path, FETCH)
    assert_refused(info.value, "image_url_not_allowed")
    assert server.requests == []
