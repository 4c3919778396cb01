"""The official Python SDK's ``completions.create`` (streamed and not), with a stop sequence,
against real Hypercorn and the fake codex."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.servers import SdkClientFactory, ServerFactory, in_thread, serve_fake


@pytest.mark.slow
async def test_sdk_completions_create_plain_and_streamed(
    tmp_path: Path, fake_codex: Path, start_server: ServerFactory, sdk_client: SdkClientFactory
) -> None:
    """The official SDK's completions.create works, streamed and not, with stop honoured."""
    url = await serve_fake(tmp_path, fake_codex, start_server)
    client = sdk_client(url)
    plain = await in_thread(
        lambda: client.completions.create(
            model="gpt-test", prompt="hi [[codex:reply=Hello there. STOP here]]", stop="STOP"
        )
    )
    assert plain.object == "text_completion"
    assert plain.choices[0].text == "Hello there. "
    assert plain.choices[0].finish_reason == "stop"

    def consume() -> list[Any]:
        stream = client.completions.create(
            model="gpt-test",
            prompt="[[codex:mode=messages;count=2]]",
            stream=True,
            stream_options={"include_usage": True},
        )
        return list(stream)

    chunks = await in_thread(consume)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text == "part-0\n\npart-1"
    assert chunks[-1].usage is not None
