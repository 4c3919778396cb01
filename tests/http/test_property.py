"""Property-based tests (hypothesis) of request validation and of the JSON nesting guard.

For generated bodies (chat-shaped ones with random types in the known fields, arbitrary JSON
values, arbitrary bytes) the app answers 2xx or 4xx with a well-formed body, never a 5xx and
never a hang. The app runs in process with a backend that builds the real ``codex exec``
command (argv, environment, stdin bytes) and checks the request's image files, so everything
up to the spawn is exercised while no process runs. Examples are derandomized for CI.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import trio
from hypothesis import HealthCheck, event, given, settings

from tests.support import sse
from tests.support.fakes import TEST_CATALOG, make_settings
from trio_codex import create_app
from trio_codex.api import components
from trio_codex.codex.command import build_command
from trio_codex.http.body import _json_depth_ok
from trio_codex.run.events import (
    CodexEvent,
    MessageCompleted,
    ThreadStarted,
    TurnCompleted,
    TurnStarted,
    Usage,
)
from trio_codex.run.runner import ExitInfo, RunSpec
from trio_codex.settings import REASONING_EFFORTS, SANDBOX_MODES, Settings

EXAMPLES = settings(
    max_examples=200,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[
        HealthCheck.function_scoped_fixture,
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
    ],
)

PNG = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kg"
    "AAAABJRU5ErkJggg=="
)


class CommandBackend:
    """Builds the real Codex command for every run (no spawn), checks the image files are
    there, and answers. Any failure here becomes a 500, which the properties forbid."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.runs: list[RunSpec] = []

    async def run(self, spec: RunSpec, emit: Callable[[CodexEvent], Awaitable[None]]) -> ExitInfo:
        self.runs.append(spec)
        command = build_command(self.settings, spec, binary=Path("codex"), environ={})
        assert command.argv[-1] == "-"
        assert command.stdin == spec.prompt.encode("utf-8")
        assert all(path.is_file() for path in spec.images)
        await emit(ThreadStarted("thread-1"))
        await emit(TurnStarted())
        await emit(MessageCompleted("item_1", "ok"))
        await emit(TurnCompleted(Usage(3, 0, 1, 0)))
        return ExitInfo(0, "")


async def answer(tmp_path: Path, raw: bytes) -> tuple[int, str, bytes, int]:
    """POST ``raw`` to a fresh app; return status, content type, body and the number of runs."""
    root = tmp_path / "scratch"
    root.mkdir(exist_ok=True)
    app_settings = make_settings(tmp_path, max_image_bytes=1024, timeout=10.0)
    backend = CommandBackend(app_settings)
    app = create_app(app_settings, backend=backend, catalog=TEST_CATALOG, environ={})
    service = components(app).service
    service.scratch_root = root
    async with app.test_app():
        with trio.fail_after(10):
            response = await app.test_client().post(
                "/v1/chat/completions", data=raw, headers={"Content-Type": "application/json"}
            )
            body = await response.get_data(as_text=False)
            await service.runner.running.wait_value(0)
    assert list(root.iterdir()) == []  # every request's scratch directory is gone
    return response.status_code, response.headers.get("Content-Type", ""), body, len(backend.runs)


def check_answer(tmp_path: Path, raw: bytes) -> int:
    """The properties every answer has; returns the status."""
    status, content_type, body, runs = trio.run(answer, tmp_path, raw)
    assert status < 500, body[:2000]
    assert status >= 200, body[:2000]
    if status >= 400:
        error = json.loads(body)["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert isinstance(error["message"], str)
        assert error["message"]
        assert isinstance(error["type"], str)
        assert error["param"] is None or isinstance(error["param"], str)
        assert error["code"] is None or isinstance(error["code"], str)
        assert runs == 0
        return status
    assert runs == 1
    if content_type.startswith("text/event-stream"):
        frames = [f for f in sse.frames(body) if not f.raw.startswith(":")]
        assert frames[-1].raw == "data: [DONE]"
        for frame in frames[:-1]:
            chunk = frame.json()
            assert chunk["object"] == "chat.completion.chunk"
    else:
        completion = json.loads(body)
        assert completion["object"] == "chat.completion"
        assert completion["choices"][0]["message"]["role"] == "assistant"
    return status


# --- strategies ----------------------------------------------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=12,
)


#: Text, also with lone surrogates (valid JSON escapes, not valid Unicode) and other oddities.
texts = st.one_of(
    st.text(max_size=40),
    st.text(st.characters(categories=["Cs", "Cc", "Lu", "Nd", "Zs"]), max_size=8),
    st.sampled_from(["", "\x00", "[[run:crash=1]]", "</message>", "[" * 70, '\\"']),
)
image_urls = st.one_of(
    st.sampled_from(
        [
            "data:image/png;base64," + base64.b64encode(PNG).decode(),
            "data:image/png;base64," + base64.b64encode(PNG + b"\0" * 2048).decode(),
            "data:image/png;base64,!!!!",
            "data:image/gif;base64," + base64.b64encode(b"not a gif").decode(),
            "data:text/plain;base64,aGk=",
            "data:,",
            "DATA:IMAGE/PNG;BASE64," + base64.b64encode(PNG).decode(),
            "file:///etc/passwd",
            "/etc/passwd",
            "C:\\x.png",
            "http://10.0.0.1/x.png",
            "https://example.com/x.png",
            "javascript:alert(1)",
            "",
        ]
    ),
    st.text(max_size=20),
)
good_texts = st.text(max_size=40)
good_image_urls = st.sampled_from(
    [
        "data:image/png;base64," + base64.b64encode(PNG).decode(),
        "DATA:IMAGE/PNG;BASE64," + base64.b64encode(PNG).decode(),
    ]
)
good_parts = st.one_of(
    st.fixed_dictionaries({"type": st.just("text"), "text": texts}),
    st.fixed_dictionaries(
        {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": good_image_urls})}
    ),
    st.fixed_dictionaries(
        {"type": st.just("image_url"), "image_url": st.fixed_dictionaries({"url": image_urls})}
    ),
    st.fixed_dictionaries({"type": st.just("refusal"), "refusal": good_texts}),
)
good_tool_calls = st.lists(
    st.fixed_dictionaries(
        {
            "id": good_texts,
            "type": st.just("function"),
            "function": st.fixed_dictionaries({"name": good_texts, "arguments": good_texts}),
        }
    ),
    max_size=2,
)
good_messages = st.fixed_dictionaries(
    {
        "role": st.sampled_from(["system", "developer", "user", "assistant", "tool", "function"]),
        "content": st.one_of(texts, st.lists(good_parts, max_size=3), st.none()),
    },
    optional={"name": good_texts, "tool_call_id": good_texts, "tool_calls": good_tool_calls},
)
schemas = st.one_of(
    st.sampled_from(
        [
            {"type": "object", "properties": {"a": {"type": "string"}}, "required": ["a"]},
            {"type": "object", "additionalProperties": False},
            {"type": "nope"},
            {"pattern": "["},
            {"$ref": "#/nowhere"},
            {"minimum": "x"},
        ]
    ),
    st.dictionaries(st.text(max_size=8), json_values, max_size=3),
)
good_response_formats = st.one_of(
    st.fixed_dictionaries({"type": st.sampled_from(["text", "json_object"])}),
    st.fixed_dictionaries(
        {
            "type": st.just("json_schema"),
            "json_schema": st.fixed_dictionaries(
                {"name": good_texts, "schema": schemas}, optional={"strict": st.booleans()}
            ),
        }
    ),
)
good_x_codex = st.fixed_dictionaries(
    {},
    optional={
        "sandbox": st.sampled_from(SANDBOX_MODES),
        "network_access": st.booleans(),
        "reasoning_effort": st.sampled_from(REASONING_EFFORTS),
    },
)
good_chat_bodies = st.fixed_dictionaries(
    {
        "model": st.sampled_from(["gpt-test", "gpt-test-high", "org/gpt-test-2", "nope"]),
        "messages": st.lists(good_messages, min_size=1, max_size=3),
    },
    optional={
        "stream": st.booleans(),
        "stream_options": st.fixed_dictionaries({"include_usage": st.booleans()}),
        "reasoning_effort": st.sampled_from(REASONING_EFFORTS),
        "response_format": good_response_formats,
        "x_codex": good_x_codex,
        "temperature": json_values,
        "max_tokens": json_values,
        "tools": json_values,
    },
)


def paths(value: Any, prefix: tuple[str | int, ...] = ()) -> list[tuple[str | int, ...]]:
    """Every path to a value inside ``value`` (object keys and list indexes)."""
    found: list[tuple[str | int, ...]] = []
    items: list[tuple[str | int, Any]] = []
    if isinstance(value, dict):
        items = list(value.items())
    elif isinstance(value, list):
        items = list(enumerate(value))
    for key, child in items:
        found.append((*prefix, key))
        found += paths(child, (*prefix, key))
    return found


def replaced(value: Any, path: tuple[str | int, ...], new: Any) -> Any:
    """A copy of ``value`` with the item at ``path`` replaced by ``new``."""
    if not path:
        return new
    head, rest = path[0], path[1:]
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    copy[head] = replaced(copy[head], rest, new)
    return copy


@st.composite
def chat_bodies(draw: st.DrawFn) -> Any:
    """A well-typed chat body, half of the time with one value anywhere in it replaced by a
    random JSON value (a wrong type, a bad enum, a missing structure)."""
    body = draw(good_chat_bodies)
    if draw(st.booleans()):
        path = draw(st.sampled_from(paths(body)))
        body = replaced(body, path, draw(json_values))
    return body


def encode(value: Any) -> bytes:
    return json.dumps(value).encode()


# --- the properties ------------------------------------------------------------------------------


@EXAMPLES
@given(body=chat_bodies())
def test_chat_shaped_bodies_get_2xx_or_4xx(tmp_path: Path, body: Any) -> None:
    """Chat-shaped bodies with random types in known fields: 2xx or a 4xx envelope, never 5xx."""
    event(f"status {check_answer(tmp_path, encode(body))}")


@EXAMPLES
@given(body=json_values)
def test_arbitrary_json_gets_a_4xx(tmp_path: Path, body: Any) -> None:
    """Any JSON value that is not a chat request is a 4xx envelope."""
    status = check_answer(tmp_path, encode(body))
    event(f"status {status}")
    assert 400 <= status < 500


@EXAMPLES
@given(raw=st.binary(max_size=300))
def test_arbitrary_bytes_get_2xx_or_4xx(tmp_path: Path, raw: bytes) -> None:
    """Arbitrary bytes as a body never cause a 5xx."""
    event(f"status {check_answer(tmp_path, raw)}")


def test_a_valid_request_passes_the_same_checks(tmp_path: Path) -> None:
    """The harness accepts a good request (so the properties above can fail on a 200 too)."""
    content = [
        {"type": "text", "text": "look"},
        {
            "type": "image_url",
            "image_url": {"url": "data:image/png;base64," + base64.b64encode(PNG).decode()},
        },
    ]
    body = {"model": "gpt-test", "stream": True, "messages": [{"role": "user", "content": content}]}
    assert check_answer(tmp_path, encode(body)) == 200


# --- the nesting guard ---------------------------------------------------------------------------

tricky_strings = st.text(alphabet=st.sampled_from('[]{}"\\ab/\u00e9\n'), max_size=12)
nested = st.recursive(
    st.none() | st.integers() | tricky_strings,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(tricky_strings, inner, max_size=3),
    max_leaves=30,
)


def depth(value: Any) -> int:
    if isinstance(value, list):
        return 1 + max((depth(v) for v in value), default=0)
    if isinstance(value, dict):
        return 1 + max((depth(v) for v in value.values()), default=0)
    return 0


@settings(max_examples=500, deadline=None, derandomize=True, database=None)
@given(value=nested, limit=st.integers(min_value=0, max_value=8), ascii_only=st.booleans())
def test_depth_guard_is_exact_for_valid_json(value: Any, limit: int, ascii_only: bool) -> None:
    """The C-speed nesting check agrees with the real nesting depth, whatever the strings hold."""
    raw = json.dumps(value, ensure_ascii=ascii_only).encode()
    assert _json_depth_ok(raw, limit) is (depth(value) <= limit)
