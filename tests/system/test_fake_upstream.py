"""Tests of ``tests/support/fake_upstream.py``: on its own over HTTP, and driven by the real
Codex CLI.

The ``realcodex`` tests need the CLI pinned in ``tests/node`` (``npm ci --prefix tests/node``)
or one named by ``TRIO_CODEX_TEST_CODEX``; without it they are skipped, or fail when the
``CI`` environment variable is set.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import jsonschema
import pytest

from tests.support import sse
from tests.support.codex_cli import (
    CodexRun,
    FakeUpstream,
    codex_env,
    exec_argv,
    private_home,
    resume_argv,
    run_codex_exec,
    write_codex_home,
)
from tests.support.fake_upstream import example_from_schema, parse_directive, split_text
from tests.support.fakes import tiny_png
from tests.support.servers import require_codex_cli

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path

RUN_TIMEOUT = 60.0
"""Upper bound in seconds for one ``codex exec`` run (they take well under a second here)."""


# --------------------------------------------------------------------------- fixtures


@dataclass
class CodexSetup:
    """A private HOME, CODEX_HOME and work directory wired to one fake upstream."""

    codex: Path
    fake: FakeUpstream
    workdir: Path
    env: dict[str, str]

    def exec(self, prompt: str, *extra: str, ephemeral: bool = True) -> CodexRun:
        """Run a new ``codex exec --json`` session with ``prompt`` on stdin."""
        argv = exec_argv(self.codex, self.workdir, *extra, ephemeral=ephemeral)
        return run_codex_exec(argv, prompt, self.env, cwd=self.workdir, timeout=RUN_TIMEOUT)

    def resume(self, thread_id: str, prompt: str) -> CodexRun:
        """Run ``codex exec resume --json <thread_id> -`` with ``prompt`` on stdin."""
        argv = resume_argv(self.codex, thread_id)
        return run_codex_exec(argv, prompt, self.env, cwd=self.workdir, timeout=RUN_TIMEOUT)


@pytest.fixture
def codex(upstream: FakeUpstream, tmp_path: Path) -> CodexSetup:
    """The real CLI configured for ``upstream``, with an empty HOME and a work dir outside git.

    Skips the test when no CLI is installed, or fails it when ``CI`` is set.
    """
    binary = require_codex_cli()
    codex_home = write_codex_home(tmp_path / "codex-home", upstream.base_url)
    workdir = tmp_path / "work"
    workdir.mkdir()
    env = codex_env(private_home(tmp_path), codex_home)
    return CodexSetup(binary, upstream, workdir, env)


def only_responses_request(fake: FakeUpstream) -> dict[str, Any]:
    """The single logged ``POST /v1/responses`` (fails if there is not exactly one)."""
    requests = fake.responses_requests()
    assert len(requests) == 1, [entry["path"] for entry in requests]
    return requests[0]


# --------------------------------------------------------------------------- pure helpers


def test_parse_directive_takes_the_last_one_and_decodes_b64() -> None:
    """The last directive wins; *_b64 values are decoded."""
    reply = base64.b64encode(b"a;b]]c").decode()
    text = f"x [[fake:mode=echo]] y [[fake: mode = text ; reply_b64={reply};chunks=3 ]]"
    assert parse_directive(text) == {"mode": "text", "reply": "a;b]]c", "chunks": "3"}
    assert parse_directive("no directive") == {}


@pytest.mark.parametrize(
    "text",
    ["[[fake:colour=red]]", "[[fake:mode=bogus]]", "[[fake:chunks=two]]", "[[fake:status=200]]"],
)
def test_parse_directive_rejects_mistakes(text: str) -> None:
    """A malformed directive is an error, not a silent fallback to text."""
    with pytest.raises(ValueError, match=r"."):
        parse_directive(text)


def test_split_text_pieces_rejoin() -> None:
    """Text split into deltas rejoins to the original."""
    assert split_text("abcdefg", 3) == ["abc", "de", "fg"]
    assert split_text("ab", 5) == ["a", "b"]
    assert split_text("", 4) == [""]


def test_example_from_schema_is_valid() -> None:
    """JSON generated from a schema validates against that schema."""
    schema = {
        "type": "object",
        "properties": {
            "name": {"type": "string", "minLength": 12},
            "count": {"type": "integer", "minimum": 3},
            "ratio": {"type": "number", "maximum": 0.5},
            "ok": {"type": "boolean"},
            "kind": {"enum": ["a", "b"]},
            "version": {"const": 2},
            "tags": {"type": "array", "items": {"type": "string"}, "minItems": 2},
            "maybe": {"type": ["null", "integer"]},
            "nested": {
                "type": "object",
                "properties": {"inner": {"anyOf": [{"type": "boolean"}, {"type": "string"}]}},
                "required": ["inner"],
                "additionalProperties": False,
            },
        },
        "required": ["name", "count", "ratio", "ok", "kind", "version", "tags", "nested"],
        "additionalProperties": False,
    }
    instance = example_from_schema(schema)
    jsonschema.validate(instance, schema)
    assert instance["version"] == 2
    assert len(instance["tags"]) == 2


# --------------------------------------------------------------------------- fake over HTTP


@contextlib.contextmanager
def connect(fake: FakeUpstream, timeout: float = 10.0) -> Iterator[http.client.HTTPConnection]:
    """An HTTP connection to ``fake`` with a socket ``timeout``, closed afterwards."""
    host, _, port = fake.base_url.removeprefix("http://").partition(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=timeout)
    try:
        yield connection
    finally:
        connection.close()


def post_responses(connection: http.client.HTTPConnection, prompt: str) -> http.client.HTTPResponse:
    """POST a minimal Responses request whose last user text is ``prompt``."""
    body = {
        "model": "fake-model",
        "stream": True,
        "input": [{"role": "user", "content": [{"type": "input_text", "text": prompt}]}],
    }
    headers = {"Content-Type": "application/json"}
    connection.request("POST", "/v1/responses", json.dumps(body), headers)
    return connection.getresponse()


def sse_events(response: http.client.HTTPResponse) -> list[dict[str, Any]]:
    """Parse a complete SSE body into its ``data`` objects."""
    return sse.payloads(response.read())


@pytest.mark.slow
def test_fake_streams_text_and_logs(upstream: FakeUpstream) -> None:
    """The fake streams a Responses SSE reply and logs the request."""
    with connect(upstream) as connection:
        response = post_responses(connection, "hi [[fake:reply=abcdefg;chunks=3;input_tokens=9]]")
        assert response.status == 200
        assert response.getheader("Content-Type") == "text/event-stream"
        events = sse_events(response)
    assert [e["type"] for e in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert "".join(e["delta"] for e in events if e["type"].endswith(".delta")) == "abcdefg"
    usage = events[-1]["response"]["usage"]
    assert usage == {
        "input_tokens": 9,
        "input_tokens_details": {"cached_tokens": 0},
        "output_tokens": 1,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": 10,
    }
    (entry,) = upstream.requests()
    assert entry["directive"] == {"reply": "abcdefg", "chunks": "3", "input_tokens": "9"}
    assert entry["body"]["model"] == "fake-model"
    upstream.clear()
    assert upstream.requests() == []


@pytest.mark.slow
def test_fake_errors_and_websocket(upstream: FakeUpstream) -> None:
    """Error modes answer with their status and headers; WebSocket upgrades get 426."""
    with connect(upstream) as connection:
        response = post_responses(connection, "[[fake:mode=error;status=429;retry_after=7]]")
        assert response.status == 429
        assert response.getheader("Retry-After") == "7"
        assert json.loads(response.read())["error"]["code"] == "rate_limit_exceeded"

    with connect(upstream) as connection:
        response = post_responses(connection, "[[fake:mode=nonsense]]")
        assert response.status == 400
        assert "nonsense" in json.loads(response.read())["error"]["message"]

    with connect(upstream) as connection:
        upgrade = {"Upgrade": "websocket", "Connection": "Upgrade"}
        connection.request("GET", "/v1/responses", headers=upgrade)
        response = connection.getresponse()
        assert response.status == 426
        response.read()


@pytest.mark.slow
def test_fake_hang_and_stall_hold_the_connection(upstream: FakeUpstream) -> None:
    """hang sends no status line; stall stops after response.created."""
    with connect(upstream, timeout=0.5) as connection, pytest.raises(TimeoutError):
        post_responses(connection, "[[fake:mode=hang]]")

    with connect(upstream, timeout=0.5) as connection:
        response = post_responses(connection, "[[fake:mode=stall]]")
        assert response.status == 200
        assert b"response.created" in response.readline() + response.readline()
        with pytest.raises(TimeoutError):
            response.read()
    assert [entry["mode"] for entry in upstream.requests()] == ["hang", "stall"]


# --------------------------------------------------------------------------- real Codex CLI


@pytest.mark.realcodex
@pytest.mark.slow
def test_text_reply_and_usage(codex: CodexSetup) -> None:
    """The real CLI reports the fake's reply as agent_message and its usage as turn usage."""
    run = codex.exec(
        "Say hello. [[fake:reply=Hello from the fake, in pieces.;chunks=4;delay_ms=20;"
        "input_tokens=1234;output_tokens=56;cached_tokens=100;reasoning_tokens=7]]"
    )
    assert run.returncode == 0, run.describe()
    assert run.events[0]["type"] == "thread.started"
    assert [item["text"] for item in run.items("agent_message")] == [
        "Hello from the fake, in pieces."
    ]
    (completed,) = run.of_type("turn.completed")
    assert completed["usage"] == {
        "input_tokens": 1234,
        "cached_input_tokens": 100,
        "cache_write_input_tokens": 0,
        "output_tokens": 56,
        "reasoning_output_tokens": 7,
    }
    request = only_responses_request(codex.fake)
    assert request["headers"]["authorization"] == "Bearer x"
    assert request["body"]["stream"] is True
    assert request["body"]["model"] == "fake-model"
    assert request["body"]["input"][-1]["role"] == "user"


@pytest.mark.realcodex
@pytest.mark.slow
def test_output_schema_gets_schema_json(codex: CodexSetup, tmp_path: Path) -> None:
    """With --output-schema the fake answers JSON that matches the schema."""
    schema = {
        "type": "object",
        "properties": {
            "title": {"type": "string"},
            "score": {"type": "integer", "minimum": 1, "maximum": 10},
            "verdict": {"type": "string", "enum": ["good", "bad"]},
            "tags": {"type": "array", "items": {"type": "string"}},
            "details": {
                "type": "object",
                "properties": {"ok": {"type": "boolean"}, "ratio": {"type": "number"}},
                "required": ["ok", "ratio"],
                "additionalProperties": False,
            },
        },
        "required": ["title", "score", "verdict", "tags", "details"],
        "additionalProperties": False,
    }
    schema_file = tmp_path / "schema.json"
    schema_file.write_text(json.dumps(schema))
    run = codex.exec("Rate it. [[fake:mode=json]]", "--output-schema", str(schema_file))
    assert run.returncode == 0, run.describe()
    (message,) = run.items("agent_message")
    jsonschema.validate(json.loads(message["text"]), schema)
    text_format = only_responses_request(codex.fake)["body"]["text"]["format"]
    assert text_format["type"] == "json_schema"
    assert text_format["schema"] == schema


@pytest.mark.realcodex
@pytest.mark.slow
def test_echo_sees_the_resumed_conversation(codex: CodexSetup) -> None:
    """A resumed thread sends the first turn upstream again (echo mode)."""
    first = codex.exec("First question. [[fake:reply=First answer.]]", ephemeral=False)
    assert first.returncode == 0, first.describe()
    thread_id = first.events[0]["thread_id"]

    echo = codex.exec("Lonely question. [[fake:mode=echo]]")
    assert echo.returncode == 0, echo.describe()
    (message,) = echo.items("agent_message")
    assert json.loads(message["text"]) == [["user", "Lonely question."]]

    resumed = codex.resume(thread_id, "Second question. [[fake:mode=echo]]")
    assert resumed.returncode == 0, resumed.describe()
    assert resumed.events[0] == {"type": "thread.started", "thread_id": thread_id}
    (message,) = resumed.items("agent_message")
    assert json.loads(message["text"]) == [
        ["user", "First question."],
        ["assistant", "First answer."],
        ["user", "Second question."],
    ]


@pytest.mark.realcodex
@pytest.mark.slow
def test_reasoning_summary_and_image(codex: CodexSetup, tmp_path: Path) -> None:
    """A reasoning summary reaches Codex; an -i image reaches the upstream."""
    image = tmp_path / "red.png"
    image.write_bytes(tiny_png())
    run = codex.exec(
        "Describe it. [[fake:mode=reasoning;summary=Looking at the image.;reply=Red.]]",
        "--image",
        str(image),
    )
    assert run.returncode == 0, run.describe()
    assert [item["text"] for item in run.items("reasoning")] == ["Looking at the image."]
    assert [item["text"] for item in run.items("agent_message")] == ["Red."]
    (picture,) = only_responses_request(codex.fake)["input_images"]
    assert picture["image_url"].startswith("data:image/png;base64,")


@pytest.mark.realcodex
@pytest.mark.slow
def test_http_401_fails_the_turn(codex: CodexSetup) -> None:
    """An upstream 401 ends the turn with turn.failed and exit 1."""
    run = codex.exec("Hi. [[fake:mode=error;status=401]]")
    assert run.returncode == 1, run.describe()
    (failed,) = run.of_type("turn.failed")
    assert "401 Unauthorized" in failed["error"]["message"]
    assert "Incorrect API key provided" in failed["error"]["message"]
    assert not run.of_type("turn.completed")
    only_responses_request(codex.fake)  # retries are off


@pytest.mark.realcodex
@pytest.mark.slow
def test_response_failed_fails_the_turn(codex: CodexSetup) -> None:
    """response.failed ends the turn with turn.failed and exit 1."""
    run = codex.exec("Hi. [[fake:mode=failed;code=context_length_exceeded]]")
    assert run.returncode == 1, run.describe()
    (failed,) = run.of_type("turn.failed")
    assert "context window" in failed["error"]["message"]
