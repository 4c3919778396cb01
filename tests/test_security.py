"""The security boundary end to end (issue 5), through the app.

Local-only mode, the danger double switch, images, the child's environment and the input
limits, each proved through ``create_app``: in process with a scripted backend where no process
is needed, with the fake codex (``[[codex:mode=argv]]``, ``[[codex:mode=env]]``) where the
argv or environment Codex really gets is the point, over a real Hypercorn where the socket
matters (chunked uploads, a client that leaves mid-stream), and with the real Codex CLI against
``tests/fake_upstream.py`` for the image round trip.
"""

from __future__ import annotations

import base64
import itertools
import json
import logging
import os
import sys
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from quart_trio import QuartTrio
from trio.testing import MockClock

from tests.support.codex_cli import FakeUpstream, codex_env, private_home
from tests.support.fakes import (
    TEST_CATALOG,
    ScriptedBackend,
    make_fifo,
    make_settings,
    read_notify,
    tiny_png,
)
from tests.support.harness import chat_body, wait_gone
from tests.support.servers import (
    ServerFactory,
    require_codex_cli,
    runner_of,
    scratch_root,
    serve_real_codex,
    service_of,
)
from tests.support.servers import running_app as app_in_process
from trio_codex import create_app
from trio_codex.codex.command import build_argv, server_config_overrides
from trio_codex.codex.exec import ExecBackend
from trio_codex.codex.localonly import (
    LOCAL_ONLY_CODEX_ARGS,
    argv_config_overrides,
    resolve_provider,
)
from trio_codex.openai.prompt import MAX_PROMPT_CHARS
from trio_codex.run.events import CodexEvent
from trio_codex.run.runner import ExitInfo, RunSpec
from trio_codex.settings import SANDBOX_MODES, Settings, SettingsError

# --- helpers ----------------------------------------------------------------------------------


PNG = tiny_png(b"\x10\x80\xf0")  # Codex passes PNGs to the upstream byte for byte
PNG_URL = "data:image/png;base64," + base64.b64encode(PNG).decode()
IMAGE_PARAM = "messages[0].content[1].image_url"


def image_body(prompt: str, url: str = PNG_URL, **extra: Any) -> dict[str, Any]:
    """A chat body whose only message is ``prompt`` plus one ``image_url`` part."""
    content = [{"type": "text", "text": prompt}, {"type": "image_url", "image_url": {"url": url}}]
    return {"model": "gpt-test", "messages": [{"role": "user", "content": content}], **extra}


def write_config(home: Path, text: str) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text(text, encoding="utf-8")


def provider_config(base_url: str, pid: str = "lan", env_key: str | None = None) -> str:
    lines = [f'model_provider = "{pid}"', f"[model_providers.{pid}]", f'name = "{pid}"']
    lines.append(f'base_url = "{base_url}"')
    if env_key is not None:
        lines.append(f'env_key = "{env_key}"')
    return "\n".join(lines) + "\n"


REMOTE = provider_config("http://192.168.1.10:8080/v1")
LOOPBACK = provider_config("http://127.0.0.1:11434/v1", pid="box")


def running_app(
    tmp_path: Path,
    backend: Any,
    *,
    environ: dict[str, str] | None = None,
    **settings: Any,
) -> AbstractAsyncContextManager[QuartTrio]:
    """The app in process, in a bare environment (only PATH) unless ``environ`` is given."""
    return app_in_process(tmp_path, backend, environ=environ or {"PATH": os.defpath}, **settings)


async def post(app: QuartTrio, body: Any, **headers: str) -> tuple[int, Any]:
    """POST a chat body (any JSON value) and return the status and the parsed JSON answer."""
    response = await app.test_client().post("/v1/chat/completions", json=body, headers=headers)
    return response.status_code, await response.get_json()


def assert_error(status: int, body: Any, expected: int, code: str, param: str | None) -> str:
    """Check an OpenAI error envelope; return its message."""
    assert status == expected, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert (body["error"]["code"], body["error"]["param"]) == (code, param)
    message: str = body["error"]["message"]
    return message


def fake_codex_app(tmp_path: Path, fake_codex: Path, **settings: Any) -> QuartTrio:
    """The app with the real ExecBackend running the fake codex, in a minimal environment."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    return create_app(
        make_settings(tmp_path, codex_path=fake_codex, **settings),
        catalog=TEST_CATALOG,
        environ=env,
    )


async def codex_argv(url: str, **extra: Any) -> tuple[int, list[str]]:
    """One request over HTTP: (status, the argv the fake codex was started with or [])."""
    async with httpx.AsyncClient(base_url=url, timeout=20) as http:
        response = await http.post(
            "/v1/chat/completions", json=chat_body("[[codex:mode=argv]]", **extra)
        )
    if response.status_code != 200:
        return response.status_code, []
    argv: list[str] = json.loads(response.json()["choices"][0]["message"]["content"])
    return 200, argv


def flag_value(argv: list[str], flag: str) -> str:
    return argv[argv.index(flag) + 1]


# --- 1. local-only through the server ----------------------------------------------------------


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


def test_argv_config_overrides_reads_codex_flags() -> None:
    """-c/--config values parse as TOML (raw string otherwise); --enable/--disable are features."""
    argv = [
        "codex",
        "exec",
        "-c",
        'model_provider="lan"',
        "--config",
        "model_providers.lan.base_url=http://10.0.0.1/v1",
        "--config=x.y=[1, 2]",
        "--disable",
        "plugins",
        "--enable",
        "web_search_request",
        "-s",
        "read-only",
        "-c",
        "not-a-pair",
        "-",
    ]
    assert argv_config_overrides(argv) == (
        ("model_provider", "lan"),
        ("model_providers.lan.base_url", "http://10.0.0.1/v1"),
        ("x.y", [1, 2]),
        ("features.plugins", False),
        ("features.web_search_request", True),
    )


#: The only config keys the server ever passes with -c; none of them can change the provider.
SERVER_CONFIG_KEYS = {
    "analytics.enabled",
    "web_search",
    "model_reasoning_effort",
    "sandbox_workspace_write.network_access",
    "sandbox_mode",
}

PROVIDER_CONFIGS = [
    "",
    REMOTE,
    LOOPBACK,
    'model_provider = "ollama"\n',
    'model_provider = "lmstudio"\n',
    'openai_base_url = "http://127.0.0.1:9000/v1"\n',
]


@pytest.mark.parametrize("config", PROVIDER_CONFIGS)
def test_server_argv_cannot_change_the_provider(tmp_path: Path, config: str) -> None:
    """Every -c the server can put in argv is a known non-provider key; verdicts do not move."""
    write_config(tmp_path, config)
    specs = [
        RunSpec(prompt="x", model="m", reasoning_effort=effort, sandbox=sandbox, network_access=net)
        for effort in (None, "low", "ultra")
        for sandbox in ("read-only", "workspace-write", "danger-full-access")
        for net in (False, True)
    ]
    specs += [RunSpec(prompt="x", resume_thread_id="t", persist=True, sandbox="workspace-write")]
    specs += [RunSpec(prompt="x", images=(Path("i.png"),))]
    plain = resolve_provider(tmp_path, {})
    for spec, local_only in itertools.product(specs, (False, True)):
        argv = build_argv(Path("codex"), spec, workdir=tmp_path, local_only=local_only)
        overrides = argv_config_overrides(argv)
        keys = {key for key, _ in overrides if not key.startswith("features.")}
        assert keys <= SERVER_CONFIG_KEYS, spec
        assert resolve_provider(tmp_path, {}, overrides) == plain, spec


@pytest.mark.slow
@pytest.mark.parametrize("local_only", [False, True])
async def test_local_only_switches_reach_codex_argv(
    tmp_path: Path, fake_codex: Path, start_server: ServerFactory, local_only: bool
) -> None:
    """In local-only mode Codex's argv carries LOCAL_ONLY_CODEX_ARGS before the stdin marker."""
    write_config(tmp_path / "codex-home", LOOPBACK)
    url = await start_server(fake_codex_app(tmp_path, fake_codex, local_only=local_only))
    with trio.fail_after(20):
        status, argv = await codex_argv(url)
    assert status == 200
    assert argv[-1] == "-"
    window = len(LOCAL_ONLY_CODEX_ARGS)
    found = any(
        tuple(argv[i : i + window]) == LOCAL_ONLY_CODEX_ARGS for i in range(len(argv) - window)
    )
    assert found is local_only
    assert ('web_search="disabled"' in argv) is local_only


# --- 2. the danger double switch ---------------------------------------------------------------

DANGER = "danger-full-access"
OVERRIDES: list[str | None] = [None, *SANDBOX_MODES]
VALID_SERVERS = [
    (default, allow)
    for default in SANDBOX_MODES
    for allow in (False, True)
    if not (default == DANGER and not allow)
]


def expected_sandbox(default: str, allow: bool, override: str | None) -> str | None:
    """The sandbox Codex must get, or None when the request must be refused with 403."""
    effective = override or default
    return None if effective == DANGER and not allow else effective


def test_default_danger_without_the_switch_does_not_start(tmp_path: Path) -> None:
    """CODEX_SANDBOX_MODE=danger-full-access without CODEX_ALLOW_DANGER_FULL_ACCESS=1 is refused."""
    environ = {
        "CODEX_PATH": sys.executable,
        "CODEX_WORKDIR": str(tmp_path),
        "CODEX_SANDBOX_MODE": DANGER,
        "CODEX_ALLOW_DANGER_FULL_ACCESS": "0",
    }
    with pytest.raises(SettingsError, match="CODEX_ALLOW_DANGER_FULL_ACCESS=1"):
        Settings.from_env(environ)
    with pytest.raises(SettingsError, match="CODEX_ALLOW_DANGER_FULL_ACCESS=1"):
        make_settings(tmp_path, sandbox_mode=DANGER)
    allowed = Settings.from_env({**environ, "CODEX_ALLOW_DANGER_FULL_ACCESS": "1"})
    assert allowed.sandbox_mode == DANGER


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


@pytest.mark.slow
@pytest.mark.parametrize(("default", "allow"), VALID_SERVERS)
async def test_double_switch_matrix_reaches_the_real_argv(
    tmp_path: Path, fake_codex: Path, start_server: ServerFactory, default: str, allow: bool
) -> None:
    """For each server setting and request override, the fake codex sees the expected -s."""
    app = fake_codex_app(tmp_path, fake_codex, sandbox_mode=default, allow_danger_full_access=allow)
    url = await start_server(app)
    seen: dict[str | None, str | int] = {}
    with trio.fail_after(30):
        for override in OVERRIDES:
            extra = {} if override is None else {"x_codex": {"sandbox": override}}
            status, argv = await codex_argv(url, **extra)
            seen[override] = flag_value(argv, "-s") if status == 200 else status
    assert seen == {o: expected_sandbox(default, allow, o) or 403 for o in OVERRIDES}


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


# --- 3. images ----------------------------------------------------------------------------------


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


@pytest.mark.slow
async def test_abandoned_stream_over_http_leaves_no_temp_file(
    tmp_path: Path, fake_codex: Path, start_server: ServerFactory
) -> None:
    """The image exists while Codex runs; after the client leaves mid-stream it is gone."""
    app = fake_codex_app(tmp_path, fake_codex)
    url = await start_server(app)
    root = scratch_root(app, tmp_path)
    fifo = make_fifo(tmp_path)
    body = image_body(f"[[codex:mode=hang;notify={fifo}]]", stream=True)
    with trio.fail_after(20):
        async with trio.open_nursery() as nursery:

            async def client() -> None:
                async with (
                    httpx.AsyncClient(base_url=url, timeout=30) as http,
                    http.stream("POST", "/v1/chat/completions", json=body) as response,
                ):
                    async for _ in response.aiter_raw():
                        pass

            nursery.start_soon(client)
            pids = await read_notify(fifo)
            (scratch,) = root.iterdir()
            assert [p.name for p in scratch.iterdir()] == ["image-1.png"]
            assert (scratch / "image-1.png").read_bytes() == PNG
            nursery.cancel_scope.cancel(reason="test: client leaves mid-stream")
        for pid in pids:
            await wait_gone(pid)
        await runner_of(app).running.wait_value(0)
    assert list(root.iterdir()) == []


# --- 3b. images with the real Codex CLI --------------------------------------------------------


@pytest.fixture(scope="session")
def codex_cli() -> Path:
    """The real Codex CLI as found, not its native binary (skipped with an install hint when
    missing; failing in CI). A fixture, so a skip is reported with its message."""
    return require_codex_cli(native=False)


@pytest.mark.slow
@pytest.mark.realcodex
@pytest.mark.parametrize(("stream", "local_only"), [(False, True), (True, False)])
async def test_data_url_image_reaches_the_upstream_with_real_codex(
    tmp_path: Path,
    codex_cli: Path,
    upstream: FakeUpstream,
    start_server: ServerFactory,
    stream: bool,
    local_only: bool,
) -> None:
    """A data: URL image reaches the upstream byte for byte through real Codex, streaming too."""
    server = await serve_real_codex(
        tmp_path,
        upstream.base_url,
        start_server,
        codex_path=codex_cli,
        environ=codex_env(private_home(tmp_path), tmp_path / "codex-home"),
        local_only=local_only,
    )
    app, url = server.app, server.url
    root = scratch_root(app, tmp_path)
    body = image_body("What colour is it? [[fake:reply=Teal.]]", stream=stream)
    body["model"] = "fake-model"
    with trio.fail_after(60):
        async with httpx.AsyncClient(base_url=url, timeout=60) as http:
            response = await http.post("/v1/chat/completions", json=body)
        await runner_of(app).running.wait_value(0)
        requests = await trio.to_thread.run_sync(upstream.responses_requests)
    assert response.status_code == 200, response.text
    if stream:
        assert '"content":"Teal."' in response.text
        assert response.text.rstrip().endswith("data: [DONE]")
    else:
        assert response.json()["choices"][0]["message"]["content"] == "Teal."
    (request,) = requests
    (image,) = request["input_images"]
    header, _, data = image["image_url"].partition(",")
    assert header == "data:image/png;base64"
    assert base64.b64decode(data) == PNG
    tools = [tool.get("type") for tool in request["body"].get("tools", [])]
    assert ("web_search" in tools) is not local_only
    assert list(root.iterdir()) == []


# --- 4. the child's environment ------------------------------------------------------------------

#: Every variable Settings.from_env reads, with a valid value.
SERVER_SETTINGS = {
    "PROXY_API_KEY": "sk-proxy-secret-one,sk-proxy-secret-two",
    "RATE_LIMIT_PER_MINUTE": "100",
    "CODEX_SANDBOX_MODE": "read-only",
    "CODEX_REASONING_EFFORT": "low",
    "CODEX_LOCAL_ONLY": "1",
    "CODEX_ALLOW_DANGER_FULL_ACCESS": "0",
    "CODEX_TIMEOUT": "30",
    "CODEX_MAX_PARALLEL_REQUESTS": "2",
    "CODEX_QUEUE_TIMEOUT_SECONDS": "5",
    "CODEX_IDLE_TIMEOUT": "30",
    "CODEX_SSE_KEEPALIVE_SECONDS": "5",
    "CODEX_KILL_GRACE_SECONDS": "1",
    "MAX_REQUEST_BYTES": "100000",
    "CODEX_MAX_IMAGE_BYTES": "50000",
    "CODEX_ALLOW_IMAGE_FETCH": "0",
    "CODEX_ENV_PASSTHROUGH": "MY_TOOL_TOKEN",
    "TRIO_CODEX_RESPONSE_ID_SECRET": "response-id-secret",
}


@pytest.mark.slow
async def test_child_environment_through_the_server(
    tmp_path: Path, fake_codex: Path, start_server: ServerFactory
) -> None:
    """Codex's env has no server setting (PROXY_API_KEY) but the passthrough and env_key names."""
    home = tmp_path / "codex-home"
    write_config(
        home, provider_config("http://127.0.0.1:9/v1", pid="mine", env_key="MY_PROVIDER_KEY")
    )
    workdir = tmp_path / "work"
    workdir.mkdir()
    environ = {
        **SERVER_SETTINGS,
        "CODEX_PATH": str(fake_codex),
        "CODEX_HOME": str(home),
        "CODEX_WORKDIR": str(workdir),
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "MY_TOOL_TOKEN": "tool-token",
        "MY_PROVIDER_KEY": "provider-key",
        "CODEX_API_KEY": "codex-key",
        "OPENAI_API_KEY": "sk-openai-not-for-codex",
        "AWS_SECRET_ACCESS_KEY": "aws-secret",
    }
    app = create_app(Settings.from_env(environ), catalog=TEST_CATALOG, environ=environ)
    url = await start_server(app)
    with trio.fail_after(20):
        async with httpx.AsyncClient(base_url=url, timeout=20) as http:
            response = await http.post(
                "/v1/chat/completions",
                json=chat_body("[[codex:mode=env]]"),
                headers={"Authorization": "Bearer sk-proxy-secret-two"},
            )
    assert response.status_code == 200, response.text
    child = json.loads(response.json()["choices"][0]["message"]["content"])
    assert "sk-proxy-secret" not in response.text
    assert "response-id-secret" not in response.text
    assert not set(child) & {*SERVER_SETTINGS, "CODEX_PATH", "CODEX_WORKDIR"}
    assert set(child) - {"LC_CTYPE"} == {
        "PATH",
        "HOME",
        "LANG",
        "CODEX_HOME",
        "CODEX_API_KEY",
        "MY_TOOL_TOKEN",
        "MY_PROVIDER_KEY",
    }
    assert (child["MY_TOOL_TOKEN"], child["MY_PROVIDER_KEY"]) == ("tool-token", "provider-key")
    assert child["CODEX_HOME"] == str(home)


# --- 5. input limits ----------------------------------------------------------------------------


async def read_response(stream: trio.SocketStream) -> tuple[bytes, Any]:
    """Read one HTTP/1.1 response with a Content-Length: (status line and headers, JSON body)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = await stream.receive_some(65536)
        assert chunk, data
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(
        int(line.split(b":", 1)[1])
        for line in head.split(b"\r\n")
        if line.lower().startswith(b"content-length:")
    )
    while len(body) < length:
        chunk = await stream.receive_some(65536)
        assert chunk, data
        body += chunk
    return head, json.loads(body)


@pytest.mark.slow
async def test_chunked_body_over_the_limit_is_refused_while_it_arrives(
    tmp_path: Path, start_server: ServerFactory
) -> None:
    """A chunked body gets 413 once past the limit, before the (never finished) body ends."""
    limit = 64 * 1024
    backend = ScriptedBackend()
    app = create_app(
        make_settings(tmp_path, max_body_bytes=limit), backend=backend, catalog=TEST_CATALOG
    )
    url = await start_server(app)
    host, port = url.removeprefix("http://").split(":")
    piece = b" " * 4096
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n"
        )
        sent = 0
        while sent <= limit + 3 * len(piece):  # never the terminating zero-length chunk
            await stream.send_all(b"%x\r\n%b\r\n" % (len(piece), piece))
            sent += len(piece)
        with trio.fail_after(10):
            head, body = await read_response(stream)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert body["error"]["code"] == "request_too_large"
    assert backend.runs == []


@pytest.mark.slow
async def test_declared_length_over_the_limit_is_refused_before_the_body(
    tmp_path: Path, start_server: ServerFactory
) -> None:
    """A Content-Length over the limit gets 413 without a single body byte sent."""
    app = create_app(
        make_settings(tmp_path, max_body_bytes=4096),
        backend=ScriptedBackend(),
        catalog=TEST_CATALOG,
    )
    url = await start_server(app)
    host, port = url.removeprefix("http://").split(":")
    stream = await trio.open_tcp_stream(host, int(port))
    async with stream:
        await stream.send_all(
            b"POST /v1/chat/completions HTTP/1.1\r\nHost: test\r\n"
            b"Content-Type: application/json\r\nContent-Length: 1000000000\r\n\r\n"
        )
        with trio.fail_after(10):
            head, body = await read_response(stream)
    assert head.startswith(b"HTTP/1.1 413"), head
    assert body["error"]["code"] == "request_too_large"


@pytest.mark.slow
@pytest.mark.parametrize(
    ("messages", "code"),
    [
        pytest.param(
            [{"role": "user", "content": "e" * (MAX_PROMPT_CHARS + 1)}],
            "context_length_exceeded",
            id="one-message",
        ),
        pytest.param(
            [
                {"role": "system", "content": "s" * (MAX_PROMPT_CHARS // 2)},
                {"role": "user", "content": "u" * (MAX_PROMPT_CHARS // 2)},
            ],
            "context_length_exceeded",
            id="rendered-transcript",
        ),
        pytest.param(
            [{"role": "user", "content": "a lone surrogate \ud800 here"}],
            "invalid_value",
            id="lone-surrogate",
        ),
    ],
)
async def test_unsendable_prompt_is_refused_before_any_process(
    tmp_path: Path, fake_codex: Path, messages: list[dict[str, str]], code: str
) -> None:
    """A prompt over 1,048,576 chars (or not UTF-8) is a 400; the fake codex never starts."""
    settings = make_settings(tmp_path, codex_path=fake_codex)
    spawned: list[int] = []
    backend = ExecBackend(settings, environ={"PATH": "/usr/bin:/bin"}, on_spawn=spawned.append)
    app = create_app(settings, backend=backend, catalog=TEST_CATALOG)
    with trio.fail_after(20):
        async with app.test_app():
            status, body = await post(app, {"model": "gpt-test", "messages": messages})
    assert_error(status, body, 400, code, "messages")
    assert spawned == []


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
            json.dumps({**chat_body(), "temperature": float("nan")}).encode(), 200, None, id="nan"
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
