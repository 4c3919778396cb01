"""End to end: branching conversations on ``/v1/responses`` with ``CODEX_BACKEND=app-server``:
the official SDK -> trio_codex (real Hypercorn) -> the real ``codex app-server``
(``thread/resume`` for the latest response, ``thread/fork`` for an older one) -> the fake
Responses upstream, whose request log shows exactly which history each turn sent.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.codex_cli import FakeUpstream
from tests.support.servers import ServerFactory, in_thread, scratch_root, sdk, serve_real_codex
from trio_codex.openai.responses.ids import ResponseIdCodec, ResponseRef, key_binding

pytestmark = [pytest.mark.slow, pytest.mark.realcodex]

SECRET = b"realcodex-branching-secret-32-bytes!"


def prompt(text: str, input_tokens: int, output_tokens: int) -> str:
    return f"{text} [[fake:mode=echo;input_tokens={input_tokens};output_tokens={output_tokens}]]"


def conversation_of(request: dict[str, Any]) -> list[tuple[str, str]]:
    """(role, text) of the user prompts and assistant answers an upstream request carried
    (Codex's own context messages left out)."""
    out = []
    for item in request["body"]["input"]:
        if item.get("type", "message") != "message" or item.get("role") not in (
            "user",
            "assistant",
        ):
            continue
        for part in item["content"]:
            text = part.get("text", "")
            if item["role"] == "assistant" or "[[fake:" in text:
                out.append((item["role"], text.partition(" [[fake:")[0]))
    return out


def ref(response_id: str) -> ResponseRef:
    return ResponseIdCodec(SECRET).decode(response_id, key_binding(None))


async def test_branches_hold_only_their_history_and_report_their_own_usage(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """A 3-turn conversation, then two concurrent branches of turn 1 and a continuation of
    one branch: each upstream request holds exactly its branch's history, each response its
    own usage, and the source thread still continues from turn 3."""
    server = await serve_real_codex(
        tmp_path, upstream.base_url, start_server, backend="app-server", response_id_secret=SECRET
    )
    scratch_root(server.app, tmp_path)
    url = server.v1

    def create(text: str, previous: str | None, tokens: tuple[int, int]) -> Any:
        with sdk(url) as client:
            return client.responses.create(
                model="fake-model", input=prompt(text, *tokens), previous_response_id=previous
            )

    def stream(text: str, previous: str, tokens: tuple[int, int]) -> Any:
        with (
            sdk(url) as client,
            client.responses.stream(
                model="fake-model", input=prompt(text, *tokens), previous_response_id=previous
            ) as events,
        ):
            for _ in events:
                pass
            return events.get_final_response()

    one = await in_thread(lambda: create("one", None, (100, 10)), fail_after=60)
    two = await in_thread(lambda: create("two", one.id, (200, 20)), fail_after=60)
    three = await in_thread(lambda: create("three", two.id, (300, 30)), fail_after=60)
    assert json.loads(three.output_text)[-1] == ["user", "three"]
    source = ref(one.id).thread_id
    assert ref(three.id).thread_id == source
    assert len({ref(r.id).turn_id for r in (one, two, three)}) == 3
    upstream.clear()

    branches: dict[str, Any] = {}

    async def branch(name: str, tokens: tuple[int, int]) -> None:
        if name == "a":
            branches[name] = await in_thread(
                lambda: stream("branch a", one.id, tokens), fail_after=60
            )
        else:
            branches[name] = await in_thread(
                lambda: create("branch b", one.id, tokens), fail_after=60
            )

    async with trio.open_nursery() as nursery:
        nursery.start_soon(branch, "a", (150, 15))
        nursery.start_soon(branch, "b", (160, 16))
    a, b = branches["a"], branches["b"]
    sent = await trio.to_thread.run_sync(upstream.responses_requests)
    assert len(sent) == 2
    histories = sorted(conversation_of(request) for request in sent)
    answer_one = ("assistant", one.output_text)
    assert histories == [
        [("user", "one"), answer_one, ("user", "branch a")],
        [("user", "one"), answer_one, ("user", "branch b")],
    ]
    assert {ref(a.id).thread_id, ref(b.id).thread_id}.isdisjoint({source})
    assert ref(a.id).thread_id != ref(b.id).thread_id
    assert (a.usage.input_tokens, a.usage.output_tokens) == (150, 15)
    assert (b.usage.input_tokens, b.usage.output_tokens) == (160, 16)

    # Continuing branch a (its latest turn) resumes the branch's thread.
    upstream.clear()
    a2 = await in_thread(lambda: create("after a", a.id, (170, 17)), fail_after=60)
    assert ref(a2.id).thread_id == ref(a.id).thread_id
    (request,) = await trio.to_thread.run_sync(upstream.responses_requests)
    assert conversation_of(request) == [
        ("user", "one"),
        answer_one,
        ("user", "branch a"),
        ("assistant", a.output_text),
        ("user", "after a"),
    ]
    assert (a2.usage.input_tokens, a2.usage.output_tokens) == (170, 17)

    # The source is untouched: its latest turn still resumes it.
    upstream.clear()
    four = await in_thread(lambda: create("four", three.id, (400, 40)), fail_after=60)
    assert ref(four.id).thread_id == source
    (request,) = await trio.to_thread.run_sync(upstream.responses_requests)
    assert [text for role, text in conversation_of(request) if role == "user"] == [
        "one",
        "two",
        "three",
        "four",
    ]
    assert (four.usage.input_tokens, four.usage.output_tokens) == (400, 40)
