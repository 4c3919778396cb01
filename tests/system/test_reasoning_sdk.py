"""Reasoning display through the official ``openai`` SDK: the server's default
(``CODEX_REASONING_DISPLAY``) and the request's ``x_codex.reasoning_display``, streamed and not,
over real HTTP (Hypercorn on 127.0.0.1) with a scripted backend."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import openai
import pytest

from tests.support.fakes import TEST_CATALOG, ScriptedBackend, make_settings
from tests.support.servers import SdkClientFactory, ServerFactory, in_thread
from trio_codex import create_app

pytestmark = pytest.mark.slow

PROMPT = "[[run:reasoning=**Weighing** the options;reply=forty-two]]"


def ask(client: openai.OpenAI, display: str | None, *, stream: bool) -> tuple[str, str | None]:
    """The answer's content and its ``reasoning_content`` (None when absent), as the SDK sees
    them."""
    extra: dict[str, Any] = {"x_codex": {"reasoning_display": display}} if display else {}
    messages: Any = [{"role": "user", "content": PROMPT}]
    if not stream:
        completion = client.chat.completions.create(
            model="gpt-test", messages=messages, extra_body=extra
        )
        message = completion.choices[0].message
        assert message.content is not None
        return message.content, (message.model_extra or {}).get("reasoning_content")
    content = ""
    reasoning: str | None = None
    order: list[str] = []
    with client.chat.completions.create(
        model="gpt-test", messages=messages, extra_body=extra, stream=True
    ) as chunks:
        for chunk in chunks:
            if not chunk.choices:
                continue
            delta = chunk.choices[0].delta
            if delta.content:
                content += delta.content
                order.append("content")
            piece = (delta.model_extra or {}).get("reasoning_content")
            if piece:
                reasoning = (reasoning or "") + piece
                order.append("reasoning")
    if reasoning is not None:
        assert order[0] == "reasoning", order  # sent before the answer
    return content, reasoning


@pytest.mark.parametrize("stream", [False, True], ids=["whole", "stream"])
@pytest.mark.parametrize(
    ("server", "request_display", "content", "reasoning"),
    [
        ("hidden", None, "forty-two", None),
        ("hidden", "field", "forty-two", "**Weighing** the options"),
        ("hidden", "think", "<think>\n**Weighing** the options\n</think>\n\nforty-two", None),
        ("field", None, "forty-two", "**Weighing** the options"),
        ("think", None, "<think>\n**Weighing** the options\n</think>\n\nforty-two", None),
        ("think", "hidden", "forty-two", None),
    ],
)
async def test_reasoning_display_through_the_sdk(
    tmp_path: Path,
    backend: ScriptedBackend,
    start_server: ServerFactory,
    sdk_client: SdkClientFactory,
    server: str,
    request_display: str | None,
    content: str,
    reasoning: str | None,
    stream: bool,
) -> None:
    """The request's choice wins over the server's; the SDK exposes the extra field."""
    app = create_app(
        make_settings(tmp_path, reasoning_display=server), backend=backend, catalog=TEST_CATALOG
    )
    client = sdk_client(await start_server(app) + "/v1")
    got = await in_thread(lambda: ask(client, request_display, stream=stream))
    assert got == (content, reasoning)


async def test_an_unknown_display_is_a_400_naming_it(
    tmp_path: Path,
    backend: ScriptedBackend,
    start_server: ServerFactory,
    sdk_client: SdkClientFactory,
) -> None:
    app = create_app(make_settings(tmp_path), backend=backend, catalog=TEST_CATALOG)
    client = sdk_client(await start_server(app) + "/v1")
    with pytest.raises(openai.BadRequestError) as refused:
        await in_thread(lambda: ask(client, "shout", stream=False))
    assert refused.value.body["param"] == "x_codex.reasoning_display"  # type: ignore[index]
