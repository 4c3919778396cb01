"""The official ``openai`` Python SDK as the client, against real Hypercorn and the fake codex.

The sync client runs in a worker thread (``trio.to_thread``) so the server keeps running on
the test's trio loop; ``max_retries=0`` so a status is observed exactly once.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest
import trio

from tests.support.servers import (
    SdkClientFactory,
    ServerFactory,
    ignore_sdk_stream_gc,
    in_thread,
    serve_fake,
)
from trio_codex.settings import BackendName

pytestmark = pytest.mark.slow


async def test_sdk_non_stream(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    sdk_client: SdkClientFactory,
) -> None:
    """chat.completions.create returns the answer and usage."""
    url = await serve_fake(tmp_path, fake_codex, start_server, backend=codex_backend)
    completion = await in_thread(
        lambda: sdk_client(url).chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "hi [[codex:reply=Hello!]]"}],
            temperature=0.3,
            max_tokens=100,
        )
    )
    assert completion.choices[0].message.content == "Hello!"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (11, 7)
    assert completion.usage.total_tokens == 18


async def test_sdk_stream_with_usage(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    sdk_client: SdkClientFactory,
) -> None:
    """create(stream=True) yields role, content, finish and a final usage chunk."""
    url = await serve_fake(tmp_path, fake_codex, start_server, backend=codex_backend)

    def consume() -> list[Any]:
        stream = sdk_client(url).chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "[[codex:mode=messages;count=3]]"}],
            stream=True,
            stream_options={"include_usage": True},
        )
        return list(stream)

    chunks = await in_thread(consume)
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "part-0\n\npart-1\n\npart-2"
    finish = [
        c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason
    ]
    assert finish == ["stop"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.total_tokens == 10
    assert len({c.id for c in chunks}) == 1


async def test_sdk_stream_helper(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    sdk_client: SdkClientFactory,
) -> None:
    """The chat.completions.stream() helper accumulates the final completion."""
    url = await serve_fake(tmp_path, fake_codex, start_server, backend=codex_backend)

    def consume() -> Any:
        with sdk_client(url).chat.completions.stream(
            model="gpt-test",
            messages=[
                {"role": "system", "content": "be nice"},
                {"role": "user", "content": "[[codex:reply=streamed answer]]"},
            ],
            stream_options={"include_usage": True},
        ) as stream:
            for _ in stream:
                pass
            return stream.get_final_completion()

    final = await in_thread(consume)
    assert final.choices[0].message.content == "streamed answer"
    assert final.choices[0].finish_reason == "stop"
    assert final.usage is not None
    assert final.usage.prompt_tokens == 11


@ignore_sdk_stream_gc
async def test_sdk_async_client(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName, start_server: ServerFactory
) -> None:
    """AsyncOpenAI works on trio (httpx via anyio), streamed and not."""
    url = await serve_fake(tmp_path, fake_codex, start_server, backend=codex_backend)
    aclient = openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=0, timeout=20)
    with trio.fail_after(30):
        completion = await aclient.chat.completions.create(
            model="gpt-test-high", messages=[{"role": "user", "content": "[[codex:reply=async]]"}]
        )
        assert completion.choices[0].message.content == "async"
        stream = await aclient.chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": "[[codex:reply=async stream]]"}],
            stream=True,
        )
        parts = [c.choices[0].delta.content or "" async for c in stream if c.choices]
        assert "".join(parts) == "async stream"
        await aclient.close()


async def test_sdk_models(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    sdk_client: SdkClientFactory,
) -> None:
    """models.list() and models.retrieve() with an id containing '/'."""
    url = await serve_fake(tmp_path, fake_codex, start_server, backend=codex_backend)
    ids = await in_thread(lambda: [m.id for m in sdk_client(url).models.list()])
    assert "gpt-test" in ids
    assert "gpt-test-low" in ids
    model = await in_thread(lambda: sdk_client(url).models.retrieve("org/gpt-test-2"))
    assert model.id == "org/gpt-test-2"
    assert model.owned_by == "codex"


async def test_sdk_error_classes(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    sdk_client: SdkClientFactory,
) -> None:
    """401, 404, 429 and 503 raise the SDK's own exception classes with our codes."""
    url = await serve_fake(
        tmp_path,
        fake_codex,
        start_server,
        api_keys=("sk-good",),
        rate_limit_per_minute=2,
        max_parallel_requests=1,
        queue_timeout=0.0,
    )
    good = sdk_client(url, "sk-good")
    with pytest.raises(openai.AuthenticationError) as auth:
        await in_thread(lambda: sdk_client(url, "sk-bad").models.list())
    assert auth.value.code == "invalid_api_key"
    assert auth.value.request_id is not None
    with pytest.raises(openai.NotFoundError) as nf:
        await in_thread(
            lambda: good.chat.completions.create(
                model="gpt-nope", messages=[{"role": "user", "content": "x"}]
            )
        )
    assert nf.value.code == "model_not_found"
    with pytest.raises(openai.BadRequestError) as bad:
        await in_thread(
            lambda: good.chat.completions.create(
                model="gpt-test",
                messages=[{"role": "user", "content": "x"}],
                extra_body={"x_codex": {"sandbox": "nope"}},
            )
        )
    assert bad.value.param == "x_codex.sandbox"
    with pytest.raises(openai.RateLimitError) as rl:
        await in_thread(lambda: good.models.list())
    assert rl.value.response.headers["retry-after"]


async def test_sdk_503_when_queue_is_full(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    sdk_client: SdkClientFactory,
) -> None:
    """With the only slot busy and no queueing allowed, the SDK raises InternalServerError 503."""
    from tests.support.fakes import make_fifo, read_notify

    url = await serve_fake(
        tmp_path,
        fake_codex,
        start_server,
        backend=codex_backend,
        max_parallel_requests=1,
        queue_timeout=0.0,
    )
    fifo = make_fifo(tmp_path)
    async with trio.open_nursery() as nursery:

        async def hold() -> None:
            aclient = openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=0, timeout=20)
            await aclient.chat.completions.create(
                model="gpt-test",
                messages=[{"role": "user", "content": f"[[codex:mode=hang;notify={fifo}]]"}],
            )

        nursery.start_soon(hold)
        with trio.fail_after(10):
            await read_notify(fifo)
        with pytest.raises(openai.InternalServerError) as busy:
            await in_thread(
                lambda: sdk_client(url).chat.completions.create(
                    model="gpt-test", messages=[{"role": "user", "content": "x"}]
                )
            )
        nursery.cancel_scope.cancel()
    assert busy.value.status_code == 503
    assert busy.value.code == "queue_timeout"
    assert busy.value.response.headers["retry-after"] == "1"


async def test_sdk_upstream_failure_status(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    sdk_client: SdkClientFactory,
) -> None:
    """A Codex turn that fails with an upstream 401 reaches the SDK as AuthenticationError."""
    url = await serve_fake(tmp_path, fake_codex, start_server, backend=codex_backend)
    with pytest.raises(openai.AuthenticationError) as info:
        await in_thread(
            lambda: sdk_client(url).chat.completions.create(
                model="gpt-test", messages=[{"role": "user", "content": "[[codex:mode=fail]]"}]
            )
        )
    assert "Incorrect API key" in info.value.message
