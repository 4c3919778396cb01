"""End to end: the official SDK -> trio_codex (real Hypercorn) -> the real Codex CLI -> the fake
Responses upstream on 127.0.0.1. Usage is Codex's real count of what the upstream reported.

In CI these tests fail when the CLI is missing; elsewhere they skip with the install command.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
import trio

from tests.support.codex_cli import FakeUpstream
from tests.support.servers import ServerFactory, in_thread, sdk, serve_real_codex

pytestmark = [pytest.mark.slow, pytest.mark.realcodex]


async def test_real_codex_non_stream_with_real_usage(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """A chat completion runs the real CLI; answer and usage come from the upstream."""
    url = (await serve_real_codex(tmp_path, upstream.base_url, start_server)).v1
    prompt = "Say hello [[fake:reply=Hello from the fake;input_tokens=1234;output_tokens=56;cached_tokens=7]]"

    def call() -> Any:
        with sdk(url) as client:
            return client.chat.completions.create(
                model="fake-model", messages=[{"role": "user", "content": prompt}]
            )

    completion = await in_thread(call, fail_after=60)
    assert completion.choices[0].message.content == "Hello from the fake"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == 1234
    assert completion.usage.completion_tokens == 56
    assert completion.usage.total_tokens == 1290
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 7
    sent = await trio.to_thread.run_sync(upstream.responses_requests)
    assert len(sent) == 1
    assert sent[0]["body"]["model"] == "fake-model"
    assert prompt in str(sent[0]["body"]["input"])


async def test_real_codex_stream_helper_and_models(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """The stream() helper and models.list() work end to end with the real CLI."""
    url = (await serve_real_codex(tmp_path, upstream.base_url, start_server)).v1

    def call() -> tuple[Any, list[str]]:
        with sdk(url) as client:
            with client.chat.completions.stream(
                model="fake-model-high",
                messages=[
                    {"role": "system", "content": "Be brief."},
                    {"role": "user", "content": "Hi [[fake:reply=Streamed reply;chunks=4]]"},
                ],
                stream_options={"include_usage": True},
            ) as stream:
                for _ in stream:
                    pass
                final = stream.get_final_completion()
            return final, [m.id for m in client.models.list()]

    final, ids = await in_thread(call, fail_after=60)
    assert final.choices[0].message.content == "Streamed reply"
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None
    assert final.usage.total_tokens > 0
    assert "fake-model" in ids
    assert "fake-model-high" in ids
    assert "gpt-5.5" in ids  # from `codex debug models`
    sent = await trio.to_thread.run_sync(upstream.responses_requests)
    assert sent[-1]["body"]["reasoning"]["effort"] == "high"


async def test_real_codex_upstream_401_is_authentication_error(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """The upstream refusing Codex's key reaches the SDK as AuthenticationError with its text."""
    url = (await serve_real_codex(tmp_path, upstream.base_url, start_server)).v1

    def call() -> None:
        with sdk(url) as client:
            client.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "x [[fake:mode=error;status=401]]"}],
            )

    with pytest.raises(openai.AuthenticationError) as info:
        await in_thread(call, fail_after=60)
    assert "401" in info.value.message
