"""The image-fetch SSRF filter lets only globally routable unicast addresses through.

Python's ``ipaddress.is_global`` (3.11 and 3.13 alike) misses several special-purpose blocks of
the IANA registries; each one here was let through before and is refused now.
"""

from __future__ import annotations

import ipaddress

import pytest

from trio_codex.errors import InvalidRequestError
from trio_codex.openai.prompt import ImagePart
from trio_codex.run import images


@pytest.mark.parametrize(
    "address",
    [
        "fec0::1",  # deprecated site-local (fec0::/10)
        "feff::1",
        "192.0.0.8",  # IPv4 dummy address
        "192.0.0.9",  # IETF protocol assignments (192.0.0.0/24): no image lives there
        "192.0.0.170",  # NAT64/DNS64 discovery
        "192.88.99.1",  # deprecated 6to4 relay anycast
        "2002:c058:6301::1",  # 6to4 wrapping the relay anycast
        "3fff::1",  # documentation (RFC 9637)
        "3fff:fff::1",
        "2001:db8::1",  # documentation
        "5f00::1",  # SRv6 SIDs
        "100::1",  # discard-only
        "198.18.0.1",  # benchmarking
        "192.0.2.1",  # TEST-NET-1
        "198.51.100.1",  # TEST-NET-2
        "203.0.113.1",  # TEST-NET-3
    ],
)
def test_special_purpose_blocks_are_refused(address: str) -> None:
    assert images._is_public_address(ipaddress.ip_address(address)) is False


@pytest.mark.parametrize(
    "address",
    [
        "93.184.215.14",
        "8.8.8.8",
        "2606:2800:21f:cb07:6820:80da:af6b:8b2c",
        "2a00:1450:4001:81c::200e",
    ],
)
def test_global_unicast_still_passes(address: str) -> None:
    assert images._is_public_address(ipaddress.ip_address(address)) is True


def test_check_refuses_a_site_local_literal_url() -> None:
    """The pre-check (literal host) uses the same filter: 400 naming the part."""
    ref = ImagePart(url="http://[fec0::1]/cat.png", param="input[0].content[0].image_url")
    with pytest.raises(InvalidRequestError) as info:
        images.check_image_url(ref, images.ImagePolicy(allow_fetch=True))
    assert info.value.code == "image_url_not_allowed"
    assert info.value.param == "input[0].content[0].image_url"
