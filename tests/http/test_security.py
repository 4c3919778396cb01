"""The security boundary (issue 5) through the app in process, with a scripted backend.

Local-only mode, the danger double switch, images and their scratch directories, and the input
limits, each proved through ``create_app``. The same boundary with real processes and sockets
is ``tests/system/test_security.py``; the parts that need no app are in
``tests/codex/test_localonly.py`` and ``tests/test_settings.py``.
"""

from __future__ import annotations

import base64
import json
import logging
import os
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from quart_trio import QuartTrio
from trio.testing import MockClock

from tests.support.fakes import TEST_CATALOG, ScriptedBackend, make_settings
from tests.support.harness import chat_body
from tests.support.security import (
    DANGER,
    IMAGE_PARAM,
    LOOPBACK,
    OVERRIDES,
    PNG,
    REMOTE,
    VALID_SERVERS,
    assert_error,
    expected_sandbox,
    flag_value,
    image_body,
    post,
    provider_config,
    write_config,
)
from tests.support.servers import runner_of, scratch_root, service_of
from tests.support.servers import running_app as app_in_process
from trio_codex import create_app
from trio_codex.codex.command import build_argv, server_config_overrides
from trio_codex.openai.prompt import MAX_PROMPT_CHARS
from trio_codex.run.events import CodexEvent
from trio_codex.run.runner import ExitInfo, RunSpec


def running_app(
    tmp_path: Path,
    backend: Any,
    *,
    environ: dict[str, str] | None = None,
    **settings: Any,
) -> AbstractAsyncContextManager[QuartTrio]:
    """The app in process, in a bare environment (only PATH) unless ``environ`` is given."""
    return app_in_process(tmp_path, backend, environ=environ or {"PATH": os.defpath}, **settings)


# --- 1. local-only through the app ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("config", "environ", "provider", "url"),
    [
        pytest.param(None, {}, "openai", "https://api.openai.com/v1", id="default-openai"),
        pytest.param(REMOTE, {}, "lan", "http://192.168.1.10:8080/v1", id="custom-lan"),
        pytest.param(
            'model_provider = "ollama"\n',
            {"CODEX_OSS_BASE_URL": "http://gpu.example:11434/v1"},
            "ollama",
            "http://gpu.example:11434/v1",
            id="ollama-remote-oss-url",
        ),
        pytest.param(
            provider_config("http://[::1]:8080/v1"),
            {"HTTP_PROXY": "http://proxy.example:3128"},
            "lan",
            "http://[::1]:8080/v1",
            id="loopback-through-proxy",
        ),
    ],
)
async def test_local_only_refuses_a_remote_provider_naming_it(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    config: str | None,
    environ: dict[str, str],
    provider: str,
    url: str,
) -> None:
    """Local-only with a non-local provider: 400 local_only_violation naming it and its URL."""
    if config is not None:
        write_config(tmp_path / "codex-home", config)
    async with running_app(tmp_path, backend, local_only=True, environ=environ) as app:
        for stream in (False, True):
            status, body = await post(app, chat_body(stream=stream))
            message = assert_error(status, body, 400, "local_only_violation", None)
            assert f"`{provider}`" in message
            assert url in message
    assert backend.runs == []


async def test_local_only_rereads_the_config_when_it_changes(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Fixing config.toml turns 400 into 200 without a restart; breaking it again refuses."""
    home = tmp_path / "codex-home"
    write_config(home, REMOTE)
    async with running_app(tmp_path, backend, local_only=True) as app:
        status, body = await post(app, chat_body())
        assert_error(status, body, 400, "local_only_violation", None)
        write_config(home, LOOPBACK)
        status, body = await post(app, chat_body("[[run:reply=local]]"))
        assert status == 200, body
        assert body["choices"][0]["message"]["content"] == "local"
        write_config(home, LOOPBACK + "this is not toml\n")
        status, body = await post(app, chat_body())
        assert "cannot be parsed" in assert_error(status, body, 400, "local_only_violation", None)
        (home / "config.toml").unlink()
        status, body = await post(app, chat_body())
        assert "`openai`" in assert_error(status, body, 400, "local_only_violation", None)
    assert len(backend.runs) == 1


@pytest.mark.parametrize("local", [False, True], ids=["remote", "loopback"])
async def test_local_only_verdict_is_logged_at_startup(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    caplog: pytest.LogCaptureFixture,
    local: bool,
) -> None:
    """Startup logs the verdict: an ERROR naming provider, URL and config file when not local."""
    write_config(tmp_path / "codex-home", LOOPBACK if local else REMOTE)
    with caplog.at_level(logging.INFO, logger="trio_codex"):
        async with running_app(tmp_path, backend, local_only=True):
            pass
    lines = [r for r in caplog.records if "local" in r.getMessage().lower()]
    assert lines, caplog.text
    record = lines[0]
    message = record.getMessage()
    if local:
        assert record.levelno == logging.INFO
        assert "box" in message
        assert "http://127.0.0.1:11434/v1" in message
    else:
        assert record.levelno == logging.ERROR
        assert "`lan`" in message
        assert "http://192.168.1.10:8080/v1" in message
        assert str(tmp_path / "codex-home" / "config.toml") in message


async def test_local_only_refuses_network_access(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """With a local provider, x_codex.network_access=true is 400; false runs."""
    write_config(tmp_path / "codex-home", LOOPBACK)
    async with running_app(tmp_path, backend, local_only=True) as app:
        network = {"sandbox": "workspace-write", "network_access": True}
        status, body = await post(app, chat_body(x_codex=network))
        message = assert_error(status, body, 400, "local_only_violation", "x_codex.network_access")
        assert "CODEX_LOCAL_ONLY=1" in message
        status, _ = await post(app, chat_body(x_codex={**network, "network_access": False}))
        assert status == 200
    assert [r.spec.network_access for r in backend.runs] == [False]


def test_local_only_policy_merges_the_servers_own_overrides(tmp_path: Path) -> None:
    """The app's local-only verdict merges exactly the -c/--disable values every run gets."""
    app = create_app(
        make_settings(tmp_path, local_only=True),
        backend=ScriptedBackend(),
        catalog=TEST_CATALOG,
        environ={},
    )
    policy = service_of(app).local_only
    assert policy is not None
    assert policy.overrides == server_config_overrides(local_only=True)
    assert set(policy.overrides) >= {
        ("features.plugins", False),
        ("analytics.enabled", False),
        ("web_search", "disabled"),
    }


# --- 2. the danger double switch ------------------------------------------------------------------


@pytest.mark.parametrize(("default", "allow"), VALID_SERVERS)
@pytest.mark.parametrize("override", OVERRIDES)
async def test_double_switch_matrix(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    default: str,
    allow: bool,
    override: str | None,
) -> None:
    """Default x switch x override: danger without the switch is 403, else argv gets the mode."""
    expected = expected_sandbox(default, allow, override)
    extra: dict[str, Any] = {} if override is None else {"x_codex": {"sandbox": override}}
    async with running_app(
        tmp_path, backend, sandbox_mode=default, allow_danger_full_access=allow
    ) as app:
        status, body = await post(app, chat_body(**extra))
    if expected is None:
        message = assert_error(status, body, 403, "sandbox_not_allowed", "x_codex.sandbox")
        assert "CODEX_ALLOW_DANGER_FULL_ACCESS=1" in message
        assert body["error"]["type"] == "invalid_request_error"
        assert backend.runs == []
        return
    assert status == 200, body
    (run,) = backend.runs
    assert run.spec.sandbox == expected
    argv = list(build_argv(Path("codex"), run.spec, workdir=tmp_path))
    assert flag_value(argv, "-s") == expected
    assert argv.count("-s") == 1


@pytest.mark.parametrize(
    ("euid", "sandbox", "warned"),
    [
        (0, "workspace-write", True),
        (0, DANGER, True),
        (0, "read-only", False),
        (1000, "workspace-write", False),
    ],
)
async def test_root_with_a_writable_sandbox_warns_at_startup(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
    euid: int,
    sandbox: str,
    warned: bool,
) -> None:
    """Running as root with a writable default sandbox logs a warning naming the mode."""
    monkeypatch.setattr(os, "geteuid", lambda: euid)
    with caplog.at_level(logging.WARNING, logger="trio_codex"):
        async with running_app(
            tmp_path, backend, sandbox_mode=sandbox, allow_danger_full_access=True
        ):
            pass
    warnings = [r.getMessage() for r in caplog.records if "as root" in r.getMessage()]
    assert bool(warnings) is warned
    assert all(sandbox in w for w in warnings)


# --- 3. images ------------------------------------------------------------------------------------


class ImageCheckingBackend(ScriptedBackend):
    """A scripted backend that records, when each run starts, the bytes of its image files."""

    def __init__(self) -> None:
        super().__init__()
        self.images_seen: list[list[bytes]] = []
        self.started = trio.Event()

    async def run(self, spec: RunSpec, emit: Callable[[CodexEvent], Awaitable[None]]) -> ExitInfo:
        self.images_seen.append([path.read_bytes() for path in spec.images])
        self.started.set()
        return await super().run(spec, emit)


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


@pytest.mark.parametrize(
    ("url", "fetch", "code"),
    [
        pytest.param("file:///etc/passwd", False, "image_url_not_allowed", id="file-url"),
        pytest.param("file:///etc/passwd", True, "image_url_not_allowed", id="file-url-fetch-on"),
        pytest.param("/etc/passwd", True, "image_url_not_allowed", id="local-path"),
        pytest.param(
            "data:image/png;base64," + _b64(PNG + b"\0" * 4096),
            False,
            "image_too_large",
            id="oversized",
        ),
        pytest.param(
            "data:image/png;base64," + _b64(b"#!/bin/sh\necho not an image\n"),
            False,
            "invalid_image",
            id="wrong-bytes",
        ),
        pytest.param(
            "data:text/plain;base64," + _b64(PNG), False, "invalid_image", id="not-image-type"
        ),
        pytest.param("http://10.0.0.1/cat.png", True, "image_url_not_allowed", id="private-ip"),
        pytest.param(
            "http://169.254.169.254/latest/meta-data/", True, "image_url_not_allowed", id="metadata"
        ),
        pytest.param(
            "http://[::1]:8080/cat.png", True, "image_url_not_allowed", id="ipv6-loopback"
        ),
        pytest.param(
            "http://localhost:9/cat.png",
            True,
            "image_url_not_allowed",
            id="name-resolving-loopback",
        ),
        pytest.param("https://example.com/cat.png", False, "image_url_not_allowed", id="fetch-off"),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
async def test_bad_images_are_refused_naming_the_part(
    tmp_path: Path,
    no_http: list[httpx.Request],
    url: str,
    fetch: bool,
    code: str,
    stream: bool,
) -> None:
    """Bad image URLs and bytes: 400 naming the part; nothing run, fetched or left behind."""
    backend = ScriptedBackend()
    async with running_app(
        tmp_path, backend, max_image_bytes=len(PNG) + 100, allow_image_fetch=fetch
    ) as app:
        root = scratch_root(app, tmp_path)
        with trio.fail_after(10):
            status, body = await post(app, image_body("look", url, stream=stream))
    assert_error(status, body, 400, code, IMAGE_PARAM)
    assert backend.runs == []
    assert list(root.iterdir()) == []


async def test_image_as_a_plain_string_is_checked_too(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """An image_url given as a bare string gets the same checks (file:// refused)."""
    body = image_body("look")
    body["messages"][0]["content"][1]["image_url"] = "file:///etc/shadow"
    async with running_app(tmp_path, backend) as app:
        status, answer = await post(app, body)
    assert_error(status, answer, 400, "image_url_not_allowed", IMAGE_PARAM)


OUTCOMES = ["success", "failure", "crash", "exec-timeout", "stream", "stream-abandoned", "schema"]


@pytest.mark.parametrize("outcome", OUTCOMES)
async def test_scratch_directory_is_removed_in_every_outcome(
    autojump_clock: MockClock, tmp_path: Path, outcome: str
) -> None:
    """The image exists while the run runs, and the request's scratch dir is gone after it."""
    backend = ImageCheckingBackend()
    directive = {
        "failure": "[[run:fail=boom]]",
        "crash": "[[run:crash=1]]",
        "exec-timeout": "[[run:sleep=60]]",
        "stream-abandoned": "[[run:sleep=60]]",
    }.get(outcome, "[[run:reply=seen]]")
    extra: dict[str, Any] = {}
    if outcome.startswith("stream"):
        extra["stream"] = True
    if outcome == "schema":
        schema = {"type": "object", "properties": {"a": {"type": "string"}}}
        extra["response_format"] = {"type": "json_schema", "json_schema": {"schema": schema}}
    body = image_body(directive, **extra)
    async with running_app(tmp_path, backend, timeout=10.0) as app:
        root = scratch_root(app, tmp_path)
        runner = runner_of(app)
        if outcome == "stream-abandoned":
            async with trio.open_nursery() as client:
                client.start_soon(post, app, body)
                await backend.started.wait()  # mid-stream: the role chunk is out, Codex runs
                assert len(list(root.iterdir())) == 1
                client.cancel_scope.cancel(reason="test: the client goes away mid-stream")
            status = 200
        else:
            response = await app.test_client().post("/v1/chat/completions", json=body)
            status = response.status_code
            await response.get_data()
        await runner.running.wait_value(0)
        assert list(root.iterdir()) == []
    assert status == {"failure": 502, "crash": 500, "exec-timeout": 504}.get(outcome, 200)
    assert backend.images_seen == [[PNG]]


async def test_scratch_directory_is_removed_after_a_queue_timeout(tmp_path: Path) -> None:
    """A request with an image that gets no slot (503) leaves no scratch directory behind."""
    # Real clock: image decoding runs in a thread, which would let an autojump clock move on.
    backend = ImageCheckingBackend()
    async with running_app(tmp_path, backend, max_parallel_requests=1, queue_timeout=0.0) as app:
        root = scratch_root(app, tmp_path)
        runner = runner_of(app)
        with trio.fail_after(10):
            async with trio.open_nursery() as holder:
                holder.start_soon(post, app, chat_body("[[run:sleep=3600]]"))
                await backend.started.wait()
                status, body = await post(app, image_body("queued"))
                assert_error(status, body, 503, "queue_timeout", None)
                assert len(list(root.iterdir())) == 1  # the holder's own directory
                holder.cancel_scope.cancel(reason="test: the holder leaves")
            await runner.running.wait_value(0)
        assert list(root.iterdir()) == []
    assert backend.images_seen == [[]]


# --- 5. input limits ------------------------------------------------------------------------------


async def test_prompt_limit_is_inclusive_and_counts_added_text(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Exactly 1,048,576 characters run; the json_object instruction pushing it over is a 400."""
    exact = "e" * MAX_PROMPT_CHARS
    async with running_app(tmp_path, backend) as app:
        status, _ = await post(app, chat_body(exact))
        assert status == 200
        status, body = await post(app, chat_body(exact, response_format={"type": "json_object"}))
        assert_error(status, body, 400, "context_length_exceeded", "messages")
    assert [len(r.spec.prompt) for r in backend.runs] == [MAX_PROMPT_CHARS]


def _nest(depth: int) -> Any:
    value: Any = 1
    for _ in range(depth):
        value = [value]
    return value


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        pytest.param(
            json.dumps({**chat_body(), "metadata": _nest(63)}).encode(), 200, None, id="depth-64"
        ),
        pytest.param(
            json.dumps({**chat_body(), "metadata": _nest(64)}).encode(),
            400,
            "invalid_json",
            id="depth-65",
        ),
        pytest.param(b'{"a":' * 200_000, 400, "invalid_json", id="deep-objects"),
        pytest.param(b"[" * 1_000_000, 400, "invalid_json", id="deep-arrays-unclosed"),
        pytest.param(
            json.dumps(chat_body("[{" * 100_000)).encode(), 200, None, id="brackets-in-a-string"
        ),
        pytest.param(
            json.dumps(chat_body('\\"[' * 50_000 + '"')).encode(),
            200,
            None,
            id="escaped-quotes-and-brackets",
        ),
        pytest.param(
            b'{"model": "gpt-test", "n": ' + b"9" * 100_000 + b"}",
            400,
            "invalid_json",
            id="huge-integer",
        ),
        pytest.param(
            json.dumps(list(range(1_500_000))).encode(), 400, "invalid_json", id="big-array"
        ),
        pytest.param(
            json.dumps(chat_body("x" * 15_000_000)).encode(),
            400,
            "context_length_exceeded",
            id="15MB-prompt",
        ),
        pytest.param(
            json.dumps(chat_body("hi")).encode("utf-16"), 400, "invalid_json", id="utf-16"
        ),
        pytest.param(b'{"model": "\xff\xfe"}', 400, "invalid_json", id="invalid-utf-8"),
        pytest.param(
            json.dumps({**chat_body(), "temperature": float("nan")}).encode(),
            400,
            "invalid_json",
            id="nan",
        ),
    ],
)
async def test_deep_or_huge_json_is_a_4xx_quickly(
    tmp_path: Path, backend: ScriptedBackend, raw: bytes, status: int, code: str | None
) -> None:
    """Deep, huge or non-UTF-8 JSON is a quick 400 (never 500); brackets in strings are fine."""
    async with running_app(tmp_path, backend) as app:
        with trio.fail_after(10):
            response = await app.test_client().post(
                "/v1/chat/completions", data=raw, headers={"Content-Type": "application/json"}
            )
            body = await response.get_json()
    assert response.status_code == status, body
    if code is None:
        assert body["object"] == "chat.completion"
    else:
        assert body["error"]["code"] == code
        assert set(body["error"]) == {"message", "type", "param", "code"}
