"""A fetched image URL whose host name cannot be encoded for DNS (a label over 63 characters, an
empty label) is a 400 naming the part, not a 500 from the resolver's IDNA codec."""

from __future__ import annotations

from pathlib import Path

import pytest

from trio_codex.errors import InvalidRequestError
from trio_codex.openai.prompt import ImagePart as ImageRef
from trio_codex.run.images import ImagePolicy, check_image_url, materialize_images

FETCH = ImagePolicy(allow_fetch=True)
HOSTS = ["a" * 64 + ".example.com", "x." + "b" * 64, "a..example.com"]


@pytest.mark.parametrize("host", HOSTS)
def test_check_refuses_a_host_that_is_not_a_dns_name(host: str) -> None:
    ref = ImageRef(url=f"http://{host}/cat.png", param="messages[0].content[1].image_url")
    with pytest.raises(InvalidRequestError) as info:
        check_image_url(ref, FETCH)
    assert (info.value.status_code, info.value.code, info.value.param) == (
        400,
        "invalid_image",
        "messages[0].content[1].image_url",
    )


@pytest.mark.parametrize("host", HOSTS)
async def test_materialize_refuses_a_host_that_is_not_a_dns_name(tmp_path: Path, host: str) -> None:
    ref = ImageRef(url=f"https://{host}/cat.png", param="input[0].content[0].image_url")
    with pytest.raises(InvalidRequestError) as info:
        await materialize_images([ref], tmp_path, FETCH)
    assert (info.value.code, info.value.param) == ("invalid_image", ref.param)
