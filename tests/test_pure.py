"""Layer 1: pure functions (no clock, no processes): prompt, argv, events, settings, errors,
guards, models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trio_codex import errors
from trio_codex.codex.command import (
    FAST_FLAGS,
    build_argv,
    child_environment,
    resolve_codex_binary,
)
from trio_codex.codex.exec import parse_event
from trio_codex.codex.models import build_catalog, configured_model
from trio_codex.http.guards import RateLimiter, check_api_key, presented_key
from trio_codex.openai.chat import chat_usage
from trio_codex.openai.prompt import chat_prompt, check_length
from trio_codex.openai.responses.wire import responses_usage
from trio_codex.openai.schemas import ChatCompletionRequest, ChatMessage, parse_model
from trio_codex.run.events import (
    ErrorEvent,
    ItemEvent,
    MessageCompleted,
    ReasoningCompleted,
    ThreadStarted,
    Transcript,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    UnknownEvent,
    Usage,
    classify_failure,
)
from trio_codex.run.runner import RunSpec
from trio_codex.settings import Settings, SettingsError

# Lines recorded from Codex CLI 0.169.0 (`codex exec --json`), long strings trimmed.
RECORDED_RUN = [
    '{"type":"thread.started","thread_id":"01a20bf1-29b6-7921-bc58-13ae9b0af77b"}',
    '{"type":"item.completed","item":{"id":"item_0","type":"error","message":"Model metadata for `fake-model` not found. Defaulting to fallback metadata; this can degrade performance and cause issues."}}',
    '{"type":"turn.started"}',
    '{"type":"item.completed","item":{"id":"item_1","type":"reasoning","text":"**Planning** I will say hi."}}',
    '{"type":"item.started","item":{"id":"item_2","type":"command_execution","command":"/bin/bash -lc \'echo hi\'","aggregated_output":"","exit_code":null,"status":"in_progress"}}',
    '{"type":"item.completed","item":{"id":"item_2","type":"command_execution","command":"/bin/bash -lc \'echo hi\'","aggregated_output":"hi\\n","exit_code":0,"status":"completed"}}',
    '{"type":"item.started","item":{"id":"item_3","type":"web_search","id":"ws_1","query":"codex cli","action":{"type":"search","query":"codex cli"}}}',
    '{"type":"item.completed","item":{"id":"item_4","type":"file_change","changes":[{"path":"patched.txt","kind":"add"}],"status":"completed"}}',
    '{"type":"item.completed","item":{"id":"item_5","type":"agent_message","text":"Hello from fake upstream."}}',
    '{"type":"turn.completed","usage":{"input_tokens":5264,"cached_input_tokens":100,"cache_write_input_tokens":0,"output_tokens":6,"reasoning_output_tokens":7}}',
]

RECORDED_FAILURE = [
    '{"type":"thread.started","thread_id":"t"}',
    '{"type":"turn.started"}',
    '{"type":"error","message":"Reconnecting... 1/5 (unexpected status 401 Unauthorized: Incorrect API key provided: fake., url: http://127.0.0.1:18080/v1/responses)"}',
    '{"type":"error","message":"unexpected status 401 Unauthorized: Incorrect API key provided: fake., url: http://127.0.0.1:18080/v1/responses"}',
    '{"type":"turn.failed","error":{"message":"unexpected status 401 Unauthorized: Incorrect API key provided: fake., url: http://127.0.0.1:18080/v1/responses"}}',
]


def _messages(*pairs: tuple[str, object]) -> list[ChatMessage]:
    return [ChatMessage.model_validate({"role": r, "content": c}) for r, c in pairs]


# --- prompt ---------------------------------------------------------------------------------


def test_single_user_message_is_passed_unchanged() -> None:
    """A lone user message reaches Codex as it is, so its text is not rewritten."""
    assert chat_prompt(_messages(("user", "hello there"))).text == "hello there"


def test_conversation_keeps_roles_and_order() -> None:
    """Every message appears once, tagged with its role, in the order sent."""
    text = chat_prompt(
        _messages(
            ("system", "be brief"),
            ("developer", "use French"),
            ("user", "hi"),
            ("assistant", "salut"),
            ("user", "and now?"),
        )
    ).text
    order = [
        text.index('role="system"'),
        text.index("be brief"),
        text.index('role="developer"'),
        text.index('role="user"'),
        text.index('role="assistant"'),
        text.index("and now?"),
    ]
    assert order == sorted(order)
    assert text.count("<message ") == 5


def test_content_parts_are_joined_and_images_collected() -> None:
    """Text parts are joined; image parts become refs that name their position."""
    msgs = [
        ChatMessage.model_validate(
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "look"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "text", "text": "here"},
                ],
            }
        )
    ]
    prompt = chat_prompt(msgs)
    assert "look" in prompt.text
    assert "here" in prompt.text
    assert [i.param for i in prompt.images] == ["messages[0].content[1].image_url"]


def test_tool_messages_and_calls_are_rendered() -> None:
    """Tool results and assistant tool calls stay visible to the model."""
    msgs = [
        ChatMessage.model_validate({"role": "user", "content": "weather?"}),
        ChatMessage.model_validate(
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "c1", "type": "function", "function": {"name": "wx", "arguments": "{}"}}
                ],
            }
        ),
        ChatMessage.model_validate({"role": "tool", "tool_call_id": "c1", "content": "sunny"}),
    ]
    text = chat_prompt(msgs).text
    assert "called tool wx" in text
    assert 'role="tool" name="tool_call_id=c1"' in text
    assert "sunny" in text


def test_unsupported_part_type_names_the_part() -> None:
    """An audio part is a 400 whose param points at it."""
    msgs = [
        ChatMessage.model_validate(
            {"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}
        )
    ]
    with pytest.raises(errors.InvalidRequestError) as info:
        chat_prompt(msgs)
    assert info.value.param == "messages[0].content[0].type"


def test_prompt_over_codex_limit_is_context_length_exceeded() -> None:
    """1,048,577 characters is refused before any process starts; 1,048,576 passes."""
    assert check_length("e" * 1_048_576)
    with pytest.raises(errors.ContextLengthError) as info:
        check_length("e" * 1_048_577)
    assert info.value.status_code == 400
    assert info.value.code == "context_length_exceeded"


# --- argv -----------------------------------------------------------------------------------


def test_argv_reads_prompt_from_stdin_and_never_contains_it(tmp_path: Path) -> None:
    """The prompt is not in argv; argv ends with '-' so Codex reads stdin."""
    spec = RunSpec(prompt="secret prompt; rm -rf /", model="gpt-test", reasoning_effort="high")
    argv = build_argv(Path("/x/codex"), spec, workdir=tmp_path)
    assert argv[-1] == "-"
    assert not any("secret prompt" in a for a in argv)
    assert argv[:3] == ("/x/codex", "exec", "--json")
    for flag in ("--skip-git-repo-check", "--ephemeral", "--color"):
        assert flag in argv
    assert argv[argv.index("-s") + 1] == "read-only"
    assert argv[argv.index("-C") + 1] == str(tmp_path)
    assert argv[argv.index("-m") + 1] == "gpt-test"
    assert "model_reasoning_effort=high" in argv
    assert tuple(argv[argv.index(FAST_FLAGS[0]) :][: len(FAST_FLAGS)]) == FAST_FLAGS


def test_argv_network_access_only_with_workspace_write(tmp_path: Path) -> None:
    """network_access becomes a -c switch for workspace-write only."""
    on = build_argv(
        Path("codex"),
        RunSpec(prompt="p", sandbox="workspace-write", network_access=True),
        workdir=tmp_path,
    )
    assert "sandbox_workspace_write.network_access=true" in on
    off = build_argv(
        Path("codex"),
        RunSpec(prompt="p", sandbox="read-only", network_access=True),
        workdir=tmp_path,
    )
    assert "sandbox_workspace_write.network_access=true" not in off


def test_argv_images_and_schema(tmp_path: Path) -> None:
    """Images use the --image=PATH form (so '-' is not swallowed); the schema is a file."""
    argv = build_argv(
        Path("codex"),
        RunSpec(prompt="p", images=(tmp_path / "a.png",), output_schema=tmp_path / "s.json"),
        workdir=tmp_path,
    )
    assert f"--image={tmp_path / 'a.png'}" in argv
    assert argv[argv.index("--output-schema") + 1] == str(tmp_path / "s.json")
    assert argv[-1] == "-"


def test_argv_resume_uses_resume_subcommand(tmp_path: Path) -> None:
    """A continuation runs `exec resume ... -- <thread> -`, persisted, sandbox via -c."""
    argv = build_argv(
        Path("codex"),
        RunSpec(prompt="p", resume_thread_id="0199-abc", persist=True),
        workdir=tmp_path,
    )
    assert argv[1:3] == ("exec", "resume")
    assert argv[-3:] == ("--", "0199-abc", "-")
    assert "-s" not in argv
    assert "-C" not in argv
    assert "--ephemeral" not in argv
    assert "sandbox_mode=read-only" in argv


def test_child_environment_is_an_allowlist(tmp_path: Path) -> None:
    """Server secrets never reach Codex; PATH, HOME, CODEX_HOME and passthrough names do."""
    environ = {
        "PATH": "/bin",
        "HOME": "/home/x",
        "PROXY_API_KEY": "sk-proxy",
        "CODEX_TIMEOUT": "5",
        "AWS_SECRET_ACCESS_KEY": "nope",
        "LC_ALL": "C",
        "MY_PROVIDER_KEY": "k",
        "CODEX_API_KEY": "ck",
    }
    env = child_environment(environ, codex_home=tmp_path, passthrough=["MY_PROVIDER_KEY"])
    assert env["CODEX_HOME"] == str(tmp_path)
    assert env["PATH"] == "/bin"
    assert env["HOME"] == "/home/x"
    assert env["LC_ALL"] == "C"
    assert env["MY_PROVIDER_KEY"] == "k"
    assert env["CODEX_API_KEY"] == "ck"
    for secret in ("PROXY_API_KEY", "CODEX_TIMEOUT", "AWS_SECRET_ACCESS_KEY"):
        assert secret not in env


def test_native_binary_preferred_over_npm_shim(tmp_path: Path) -> None:
    """A CODEX_PATH that is the npm launcher resolves to the platform's native binary."""
    nm = tmp_path / "node_modules"
    shim = nm / "@openai" / "codex" / "bin" / "codex.js"
    shim.parent.mkdir(parents=True)
    shim.write_text("// launcher")
    from trio_codex.codex.command import _target_triple

    triple = _target_triple()
    if triple is None:
        pytest.skip("no native Codex build for this platform")
    arch = "x64" if triple.startswith("x86_64") else "arm64"
    osname = "linux" if "linux" in triple else "darwin"
    native = nm / "@openai" / f"codex-{osname}-{arch}" / "vendor" / triple / "bin" / "codex"
    native.parent.mkdir(parents=True)
    native.write_text("#!/bin/sh\n")
    native.chmod(0o755)
    link = tmp_path / "bin" / "codex"
    link.parent.mkdir()
    link.symlink_to(shim)
    binary, env = resolve_codex_binary(link)
    assert binary == native
    assert env["CODEX_MANAGED_BY_NPM"] == "1"
    plain = tmp_path / "plain-codex"
    plain.write_text("#!/bin/sh\n")
    assert resolve_codex_binary(plain) == (plain, {})


# --- events ---------------------------------------------------------------------------------


def test_recorded_run_parses_into_typed_events() -> None:
    """Each recorded line becomes the event of its type; the web_search duplicate id is kept."""
    events = [parse_event(line) for line in RECORDED_RUN]
    assert isinstance(events[0], ThreadStarted)
    assert events[0].thread_id == "01a20bf1-29b6-7921-bc58-13ae9b0af77b"
    assert isinstance(events[1], ItemEvent)
    assert events[1].item_type == "error"
    assert isinstance(events[2], TurnStarted)
    assert isinstance(events[3], ReasoningCompleted)
    assert isinstance(events[4], ItemEvent)
    assert events[4].phase == "started"
    assert events[4].item_type == "command_execution"
    assert isinstance(events[6], ItemEvent)
    assert events[6].item["id"] == "ws_1"
    assert isinstance(events[7], ItemEvent)
    assert events[7].item_type == "file_change"
    assert events[8] == MessageCompleted("item_5", "Hello from fake upstream.")
    assert events[9] == TurnCompleted(Usage(5264, 100, 6, 7))


def test_transcript_of_recorded_run() -> None:
    """The answer is the agent message; usage maps to chat and responses shapes."""
    transcript = Transcript()
    for line in RECORDED_RUN:
        transcript.feed(parse_event(line))
    assert transcript.text == "Hello from fake upstream."
    assert transcript.reasoning == ["**Planning** I will say hi."]
    assert transcript.failure(0) is None
    assert transcript.usage is not None
    assert chat_usage(transcript.usage) == {
        "prompt_tokens": 5264,
        "completion_tokens": 6,
        "total_tokens": 5270,
        "prompt_tokens_details": {"cached_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 7},
    }
    assert responses_usage(transcript.usage)["output_tokens_details"] == {"reasoning_tokens": 7}
    assert len(transcript.warnings) == 1


def test_recorded_failure_maps_to_401() -> None:
    """turn.failed with an upstream 401 is a 401; retry notices are not the failure."""
    transcript = Transcript()
    events = [parse_event(line) for line in RECORDED_FAILURE]
    for event in events:
        transcript.feed(event)
    assert isinstance(events[2], ErrorEvent)
    assert isinstance(events[4], TurnFailed)
    failure = transcript.failure(1)
    assert failure is not None
    assert failure.status == 401
    assert "Incorrect API key" in failure.message


@pytest.mark.parametrize(
    ("message", "status", "code"),
    [
        (
            "unexpected status 401 Unauthorized: Incorrect API key provided: fake., url: http://127.0.0.1:18080/v1/responses",
            401,
            "invalid_api_key",
        ),
        ("Quota exceeded. Check your plan and billing details.", 429, "insufficient_quota"),
        ("exceeded retry limit, last status: 429 Too Many Requests", 429, "rate_limit_exceeded"),
        (
            "rate limit exceeded: Rate limit reached. Please try again in 2.5s.",
            429,
            "rate_limit_exceeded",
        ),
        (
            "Codex ran out of room in the model's context window. Start a new thread or clear earlier history before retrying.",
            400,
            "context_length_exceeded",
        ),
        (
            "Error: turn/start: turn/start failed: Input exceeds the maximum length of 1048576 characters. (code -32602)",
            400,
            "context_length_exceeded",
        ),
        ("The requested model 'nope' does not exist.", 404, "model_not_found"),
        (
            "unexpected status 403 Forbidden: Country not supported, url: http://127.0.0.1:1/v1/responses",
            403,
            "permission_denied",
        ),
        (
            "We\u2019re currently experiencing high demand, which may cause temporary errors.",
            502,
            "upstream_error",
        ),
        (
            "stream disconnected before completion: idle timeout waiting for SSE",
            502,
            "upstream_error",
        ),
        (
            "unexpected status 503 Service Unavailable: Service unavailable., url: http://127.0.0.1:18503/v1/responses",
            502,
            "upstream_error",
        ),
    ],
)
def test_failure_mapping(message: str, status: int, code: str) -> None:
    """Codex failure texts map to the status a client should see, message kept verbatim."""
    failure = classify_failure(message)
    assert (failure.status, failure.code, failure.message) == (status, code, message)


@pytest.mark.parametrize(
    "line",
    [
        "",
        "not json",
        "[1,2]",
        '{"type":"brand.new","x":1}',
        '{"type":"item.completed"}',
        "{" * 5000,
    ],
)
def test_unknown_and_garbage_lines_are_kept_not_fatal(line: str) -> None:
    """Anything unexpected is an UnknownEvent; parse_event never raises."""
    assert isinstance(parse_event(line), UnknownEvent)


def test_exit_without_turn_completed_is_a_failure() -> None:
    """A run that printed an answer but exited non-zero without turn.completed failed."""
    transcript = Transcript()
    transcript.feed(MessageCompleted("i", "partial"))
    failure = transcript.failure(3, "")
    assert failure is not None
    assert failure.status == 502
    assert "status 3" in failure.message
    stderr_failure = Transcript().failure(1, "Error: Model provider `nope` not found\n")
    assert stderr_failure is not None
    assert "nope" in stderr_failure.message


# --- settings -------------------------------------------------------------------------------


def _env(tmp_path: Path, **extra: str) -> dict[str, str]:
    codex = tmp_path / "codex"
    codex.write_text("#!/bin/sh\n")
    codex.chmod(0o755)
    return {"CODEX_PATH": str(codex), "CODEX_HOME": str(tmp_path), **extra}


def test_settings_defaults(tmp_path: Path) -> None:
    """With nothing set, every documented default applies and the workdir is private."""
    s = Settings.from_env(_env(tmp_path))
    assert s.api_keys == ()
    assert s.rate_limit_per_minute == 0
    assert s.sandbox_mode == "read-only"
    assert s.reasoning_effort is None
    assert s.local_only is False
    assert s.allow_danger_full_access is False
    assert s.timeout == 600.0
    assert s.max_parallel_requests == 4
    assert s.queue_timeout == 30.0
    assert s.workdir != Path.cwd()
    assert s.workdir.is_dir()
    assert (s.workdir.stat().st_mode & 0o077) == 0


def test_settings_parse_values(tmp_path: Path) -> None:
    """Keys are split on commas; numbers and booleans parse."""
    s = Settings.from_env(
        _env(
            tmp_path,
            PROXY_API_KEY="a, b,,c",
            RATE_LIMIT_PER_MINUTE="10",
            CODEX_WORKDIR=str(tmp_path),
            CODEX_SANDBOX_MODE="workspace-write",
            CODEX_REASONING_EFFORT="high",
            CODEX_LOCAL_ONLY="1",
            CODEX_TIMEOUT="12.5",
            CODEX_MAX_PARALLEL_REQUESTS="2",
            CODEX_QUEUE_TIMEOUT_SECONDS="0",
        )
    )
    assert s.api_keys == ("a", "b", "c")
    assert s.rate_limit_per_minute == 10
    assert s.workdir == tmp_path.resolve()
    assert s.sandbox_mode == "workspace-write"
    assert s.reasoning_effort == "high"
    assert s.local_only is True
    assert s.timeout == 12.5
    assert s.max_parallel_requests == 2
    assert s.queue_timeout == 0


@pytest.mark.parametrize(
    ("name", "value", "fragment"),
    [
        ("CODEX_SANDBOX_MODE", "full", "read-only, workspace-write, danger-full-access"),
        ("CODEX_TIMEOUT", "soon", "not a number"),
        ("CODEX_TIMEOUT", "0", "> 0"),
        ("CODEX_TIMEOUT", "-1", "> 0"),
        ("CODEX_TIMEOUT", "inf", "finite"),
        ("CODEX_MAX_PARALLEL_REQUESTS", "0", "minimum of 1"),
        ("CODEX_MAX_PARALLEL_REQUESTS", "two", "not an integer"),
        ("RATE_LIMIT_PER_MINUTE", "-5", "minimum of 0"),
        ("CODEX_LOCAL_ONLY", "maybe", "not a boolean"),
        ("CODEX_REASONING_EFFORT", "extreme", "low, medium, high"),
        ("CODEX_WORKDIR", "/does/not/exist", "not an existing directory"),
        ("CODEX_PATH", "/does/not/exist/codex", "not an executable"),
    ],
)
def test_bad_setting_names_the_variable(
    tmp_path: Path, name: str, value: str, fragment: str
) -> None:
    """A bad value stops startup with the variable's name and what is allowed."""
    with pytest.raises(SettingsError) as info:
        Settings.from_env({**_env(tmp_path), name: value})
    assert str(info.value).startswith(name)
    assert fragment in str(info.value)


def test_danger_sandbox_needs_the_double_switch(tmp_path: Path) -> None:
    """danger-full-access as the server default needs CODEX_ALLOW_DANGER_FULL_ACCESS=1."""
    with pytest.raises(SettingsError, match="CODEX_ALLOW_DANGER_FULL_ACCESS"):
        Settings.from_env(_env(tmp_path, CODEX_SANDBOX_MODE="danger-full-access"))
    s = Settings.from_env(
        _env(tmp_path, CODEX_SANDBOX_MODE="danger-full-access", CODEX_ALLOW_DANGER_FULL_ACCESS="1")
    )
    assert s.sandbox_mode == "danger-full-access"


# --- errors ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "type_", "code"),
    [
        (errors.InvalidRequestError("m", param="messages"), 400, "invalid_request_error", None),
        (errors.ContextLengthError("m"), 400, "invalid_request_error", "context_length_exceeded"),
        (errors.AuthenticationError("m"), 401, "invalid_request_error", "invalid_api_key"),
        (
            errors.NotFoundError("m", code="model_not_found"),
            404,
            "invalid_request_error",
            "model_not_found",
        ),
        (errors.RateLimitError("m", retry_after=2.2), 429, "requests", "rate_limit_exceeded"),
        (
            errors.UpstreamError("m", status=401, code="invalid_api_key"),
            401,
            "invalid_request_error",
            "invalid_api_key",
        ),
        (errors.UpstreamError("m"), 502, "server_error", "upstream_error"),
        (errors.QueueTimeoutError("m", retry_after=5), 503, "server_error", "queue_timeout"),
        (errors.ExecTimeoutError("m"), 504, "server_error", "timeout"),
    ],
)
def test_error_envelopes(
    error: errors.ServiceError, status: int, type_: str, code: str | None
) -> None:
    """Every error has the four OpenAI keys and its status."""
    assert error.status_code == status
    body = error.envelope()
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == type_
    assert body["error"]["code"] == code


def test_retry_after_header_rounds_up() -> None:
    """Retry-After is whole seconds, at least 1."""
    assert errors.RateLimitError("m", retry_after=2.2).headers() == {"Retry-After": "3"}
    assert errors.QueueTimeoutError("m", retry_after=0.01).headers() == {"Retry-After": "1"}
    assert errors.ExecTimeoutError("m").headers() == {}


# --- guards ---------------------------------------------------------------------------------


def test_api_key_from_bearer_or_x_api_key() -> None:
    """Both header forms are read; a wrong or missing key is a 401."""
    assert presented_key({"authorization": "Bearer k1"}) == "k1"
    assert presented_key({"x-api-key": "k2"}) == "k2"
    assert presented_key({"authorization": "Basic xyz"}) is None
    assert check_api_key(("k1", "k2"), "k2") == "k2"
    assert check_api_key((), None) is None
    with pytest.raises(errors.AuthenticationError):
        check_api_key(("k1",), "k3")
    with pytest.raises(errors.AuthenticationError):
        check_api_key(("k1",), None)


def test_rate_limiter_sliding_window() -> None:
    """N requests per 60 s per bucket; the next one waits for the oldest to age out."""
    limiter = RateLimiter(2)
    limiter.check("a", 0.0)
    limiter.check("a", 10.0)
    limiter.check("b", 10.0)
    with pytest.raises(errors.RateLimitError) as info:
        limiter.check("a", 20.0)
    assert info.value.retry_after == pytest.approx(40.0)
    limiter.check("a", 60.5)
    RateLimiter(0).check("a", 0.0)  # 0 = off


# --- schemas & models -----------------------------------------------------------------------


def test_unknown_fields_are_ignored_known_ones_validated() -> None:
    """temperature, tools, n and friends pass; a wrong type names the field."""
    req = parse_model(
        ChatCompletionRequest,
        {
            "model": "m",
            "messages": [{"role": "user", "content": "hi", "weird": 1}],
            "temperature": 0.2,
            "max_tokens": 5,
            "top_p": 1,
            "n": 1,
            "stop": ["x"],
            "user": "u",
            "tools": [{"type": "function", "function": {"name": "f"}}],
            "whatever_else": {"a": [1]},
        },
    )
    assert req.model == "m"
    with pytest.raises(errors.InvalidRequestError) as info:
        parse_model(
            ChatCompletionRequest, {"model": "m", "messages": [{"role": "user", "content": 5}]}
        )
    assert info.value.param == "messages[0].content"
    with pytest.raises(errors.InvalidRequestError) as info:
        parse_model(ChatCompletionRequest, {"model": "m", "messages": [], "stream": "yes"})
    assert info.value.param == "messages"
    with pytest.raises(errors.InvalidRequestError) as info:
        parse_model(
            ChatCompletionRequest,
            {
                "model": "m",
                "messages": [{"role": "user", "content": "x"}],
                "x_codex": {"sandbox": "root"},
            },
        )
    assert info.value.param == "x_codex.sandbox"
    with pytest.raises(errors.InvalidRequestError) as info:
        parse_model(ChatCompletionRequest, {"messages": [{"role": "user", "content": "x"}]})
    assert info.value.param == "model"
    assert info.value.code == "missing_required_parameter"


def test_catalog_from_debug_models_and_config(tmp_path: Path) -> None:
    """Slugs, effort aliases and the config model are listed; hidden slugs resolve unlisted."""
    debug = json.dumps(
        {
            "models": [
                {
                    "slug": "gpt-5.5",
                    "visibility": "list",
                    "supported_reasoning_levels": [{"effort": "low"}, {"effort": "high"}],
                },
                {"slug": "secret", "visibility": "hide", "supported_reasoning_levels": []},
            ]
        }
    )
    (tmp_path / "config.toml").write_text('model = "fake-model"\nmodel_provider = "fake"\n')
    catalog = build_catalog(debug, configured_model(tmp_path))
    ids = [e.id for e in catalog.listed()]
    assert {"gpt-5.5", "gpt-5.5-low", "gpt-5.5-high", "fake-model", "fake-model-high"} <= set(ids)
    assert "secret" not in ids
    assert "secret" in catalog
    alias = catalog.resolve("gpt-5.5-high")
    assert (alias.slug, alias.effort) == ("gpt-5.5", "high")
    with pytest.raises(errors.NotFoundError) as info:
        catalog.resolve("gpt-4o")
    assert info.value.code == "model_not_found"
    assert build_catalog("garbage", None).listed() == []


@pytest.mark.parametrize(
    ("schema", "ok"),
    [
        ({"type": "object", "properties": {"a": {"type": "string"}}}, True),
        ({"type": "objectx"}, False),
        ({"type": "object", "required": "a"}, False),
        ({"type": "number", "maximum": float("nan")}, False),
        ({"type": "number", "minimum": float("inf")}, False),
    ],
)
def test_output_schema_is_checked_before_codex_runs(schema: dict[str, object], ok: bool) -> None:
    """An invalid JSON Schema (or NaN/Infinity, which is not JSON) is a 400 naming the field."""
    from trio_codex.openai.formats import check_schema

    if ok:
        check_schema(schema, param="text.format.schema")
        return
    with pytest.raises(errors.InvalidRequestError) as info:
        check_schema(schema, param="text.format.schema")
    assert info.value.param == "text.format.schema"
    assert info.value.code == "invalid_json_schema"


def test_missing_codex_home_is_created(tmp_path: Path) -> None:
    """Codex refuses a CODEX_HOME that does not exist, so the server creates it (private)."""
    home = tmp_path / "fresh" / "codex"
    settings = Settings.from_env({**_env(tmp_path), "CODEX_HOME": str(home)})
    assert settings.codex_home == home
    assert home.is_dir()
    assert (home.stat().st_mode & 0o077) == 0
    (tmp_path / "file").write_text("x")
    with pytest.raises(SettingsError, match=r"^CODEX_HOME"):
        Settings.from_env({**_env(tmp_path), "CODEX_HOME": str(tmp_path / "file")})
