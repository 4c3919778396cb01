"""The app-server backend with real processes: the fake app-server
(``tests/support/fake_app_server.py``) run by ``AppServerBackend`` directly and through a real
Hypercorn, and the real Codex CLI against the fake upstream (``realcodex``).

Every wait is for an event (the fake's notify FIFO, a pidfd turning readable, a response byte),
bounded by ``trio.fail_after``; process death is checked through ``/proc`` and pidfds.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import json
import os
import re
import signal
import stat
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from functools import partial
from pathlib import Path
from typing import Any, cast

import httpx
import openai
import pytest
import trio
from hypercorn.config import Config
from hypercorn.trio import serve
from quart_trio import QuartTrio

from tests.support.codex_cli import FAKE_API_KEY, FakeUpstream, private_home, write_codex_home
from tests.support.fakes import TEST_CATALOG, make_fifo, make_settings, read_notify
from tests.support.harness import (
    alive,
    assert_no_process_in,
    chat_body,
    check_stream,
    release_gate,
    wait_gone,
)
from tests.support.paths import FAKE_APP_SERVER_SCRIPT
from tests.support.servers import (
    ServerFactory,
    in_thread,
    require_codex_cli,
    runner_of,
    sdk,
    serve_real_codex,
)
from trio_codex import create_app
from trio_codex.api import components
from trio_codex.codex.app_server import AppServerBackend
from trio_codex.codex.app_server_check import AppServerCheckError, check_app_server, parse_version
from trio_codex.codex.backends import make_backend
from trio_codex.codex.command import FAST_FLAGS
from trio_codex.codex.exec import ExecBackend
from trio_codex.run.events import (
    CodexEvent,
    ItemEvent,
    MessageCompleted,
    ReasoningCompleted,
    TextDelta,
    ThreadStarted,
    ToolCallStarted,
    ToolCallWaiting,
    Transcript,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    Usage,
)
from trio_codex.run.runner import CodexRunner, ExitInfo, RunSpec
from trio_codex.run.tools import ToolCall, ToolOutput, ToolSet, ToolSpec
from trio_codex.settings import Settings, SettingsError

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def fake_app_server(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``tests/support/fake_app_server.py`` as an executable ``codex`` run by this test run's
    Python."""
    path = tmp_path_factory.mktemp("app-server-bin") / "codex"
    path.write_text(f"#!{sys.executable}\n" + FAKE_APP_SERVER_SCRIPT.read_text())
    path.chmod(path.stat().st_mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)
    return path


def settings_for(tmp_path: Path, codex: Path, *, process: str = "", **overrides: Any) -> Settings:
    """Settings running ``codex`` with the app-server backend; ``process`` is the fake's
    process directive (``$CODEX_HOME/fake-app-server``)."""
    settings = make_settings(tmp_path, codex_path=codex, backend="app-server", **overrides)
    if process:
        (settings.codex_home / "fake-app-server").write_text(process)
    return settings


def backend_for(settings: Settings, **kwargs: Any) -> AppServerBackend:
    env = {"PATH": "/usr/bin:/bin", "HOME": str(settings.workdir), "OPENAI_API_KEY": "sk-secret"}
    return AppServerBackend(settings, environ=env, **kwargs)


async def run_collect(
    backend: AppServerBackend, spec: RunSpec
) -> tuple[list[CodexEvent], ExitInfo]:
    events: list[CodexEvent] = []

    async def emit(event: CodexEvent) -> None:
        events.append(event)

    info = await backend.run(spec, emit)
    return events, info


def transcript_of(events: list[CodexEvent]) -> Transcript:
    transcript = Transcript()
    for event in events:
        transcript.feed(event)
    return transcript


async def assert_all_dead(pids: list[int]) -> None:
    with trio.fail_after(5):
        for pid in pids:
            await wait_gone(pid)
    assert not any(alive(pid) for pid in pids)


def failure_of(events: list[CodexEvent]) -> str:
    failures = [e.message for e in events if isinstance(e, TurnFailed)]
    assert len(failures) == 1, events
    assert isinstance(events[-1], TurnFailed), events
    return failures[0]


# --------------------------------------------------------------------------- the backend alone


def test_codex_backend_setting_picks_the_backend(tmp_path: Path, fake_app_server: Path) -> None:
    env = {"CODEX_PATH": str(fake_app_server), "CODEX_HOME": str(tmp_path / "home")}
    assert Settings.from_env(env, make_workdir=False).backend == "auto"
    chosen = Settings.from_env({**env, "CODEX_BACKEND": "app-server"}, make_workdir=False)
    assert chosen.backend == "app-server"
    with pytest.raises(
        SettingsError, match=r"CODEX_BACKEND: 'appserver' is not one of: auto, exec, app-server"
    ):
        Settings.from_env({**env, "CODEX_BACKEND": "appserver"}, make_workdir=False)
    made = make_backend(chosen, environ={}, extra_env_names=())
    assert isinstance(made, AppServerBackend)
    assert made.binary == fake_app_server
    assert made.binary_env == {}
    exec_settings = Settings.from_env({**env, "CODEX_BACKEND": "exec"}, make_workdir=False)
    assert isinstance(make_backend(exec_settings, environ={}, extra_env_names=()), ExecBackend)


async def test_a_turn_streams_deltas_and_sums_its_usage(
    tmp_path: Path, fake_app_server: Path
) -> None:
    """The whole event sequence of a turn; the group is announced, reaped, and gone."""
    spawned: list[int] = []
    reaped: list[int] = []
    backend = backend_for(
        settings_for(tmp_path, fake_app_server),
        on_spawn=spawned.append,
        on_reap=reaped.append,
    )
    with trio.fail_after(10):
        events, info = await run_collect(
            backend,
            RunSpec(prompt="[[codex:reply=abcdef;deltas=3;usage=40,4,9,3;usage_parts=2]]"),
        )
    assert isinstance(events[0], ThreadStarted)
    assert events[1:] == [
        TurnStarted("turn-1"),  # app-server reports its turn id
        TextDelta("msg_1", "ab"),
        TextDelta("msg_1", "cd"),
        TextDelta("msg_1", "ef"),
        MessageCompleted("msg_1", "abcdef"),
        TurnCompleted(Usage(40, 4, 9, 3)),
    ]
    assert info.exit_code == 0  # it exited by itself when its stdin closed
    assert "PATH aliases" in info.stderr
    assert spawned == reaped
    assert len(spawned) == 1
    assert not alive(spawned[0])


async def test_what_the_child_receives(tmp_path: Path, fake_app_server: Path) -> None:
    """argv, environment and every request: approvals off, sandbox, cwd, images, schema."""
    settings = settings_for(tmp_path, fake_app_server, local_only=False)
    image = tmp_path / "in.png"
    image.write_bytes(b"png")
    schema = tmp_path / "schema.json"
    schema.write_text(json.dumps({"type": "object", "properties": {"a": {"type": "string"}}}))
    spec = RunSpec(
        prompt="[[codex:mode=params;deltas=1]]",
        model="gpt-test",
        reasoning_effort="low",
        sandbox="workspace-write",
        network_access=True,
        images=(image,),
        output_schema=schema,
    )
    with trio.fail_after(10):
        events, _ = await run_collect(backend_for(settings), spec)
    seen = json.loads(transcript_of(events).text)
    assert seen["argv"][1:] == [*FAST_FLAGS, "app-server"]
    env = seen["env"]
    assert env["RUST_LOG"] == "off"
    assert env["NO_COLOR"] == "1"
    assert env["CODEX_HOME"] == str(settings.codex_home)
    assert "OPENAI_API_KEY" not in env  # the allowlist holds
    requests = seen["requests"]
    assert [r.get("method") for r in requests] == [
        "initialize",
        "initialized",
        "thread/start",
        "turn/start",
    ]
    assert [r.get("id") for r in requests] == [0, None, 1, 2]
    assert requests[0]["params"]["capabilities"]["experimentalApi"] is False
    assert requests[2]["params"] == {
        "cwd": str(settings.workdir),
        "approvalPolicy": "never",
        "sandbox": "workspace-write",
        "model": "gpt-test",
        "config": {"sandbox_workspace_write": {"network_access": True}},
        "ephemeral": True,
    }
    turn = requests[3]["params"]
    assert turn["input"] == [
        {"type": "text", "text": spec.prompt, "text_elements": []},
        {"type": "localImage", "path": str(image)},
    ]
    assert turn["effort"] == "low"
    assert turn["outputSchema"] == json.loads(schema.read_text())


async def test_local_only_adds_its_flags_before_the_subcommand(
    tmp_path: Path, fake_app_server: Path
) -> None:
    settings = settings_for(tmp_path, fake_app_server, local_only=True)
    with trio.fail_after(10):
        events, _ = await run_collect(
            backend_for(settings), RunSpec(prompt="[[codex:mode=params]]")
        )
    argv = json.loads(transcript_of(events).text)["argv"]
    assert argv[-1] == "app-server"
    assert 'web_search="disabled"' in argv


async def test_approval_requests_are_declined_and_the_turn_completes(
    tmp_path: Path, fake_app_server: Path
) -> None:
    """The server's request id 0 equals our initialize id: it is still answered as a request."""
    backend = backend_for(settings_for(tmp_path, fake_app_server))
    with trio.fail_after(10):
        events, info = await run_collect(backend, RunSpec(prompt="[[codex:mode=approval]]"))
    transcript = transcript_of(events)
    assert transcript.text == "decision=decline tool=-32601"
    assert transcript.failure(info.exit_code) is None
    items = [(e.phase, e.item_type, e.item["status"]) for e in events if isinstance(e, ItemEvent)]
    assert items == [
        ("started", "command_execution", "inProgress"),
        ("completed", "command_execution", "declined"),
    ]


async def test_reasoning_and_retry_notices(tmp_path: Path, fake_app_server: Path) -> None:
    backend = backend_for(settings_for(tmp_path, fake_app_server))
    with trio.fail_after(10):
        reasoning, _ = await run_collect(
            backend, RunSpec(prompt="[[codex:mode=reasoning;summary=Weighing;reply=ok]]")
        )
        retried, info = await run_collect(backend, RunSpec(prompt="[[codex:mode=retry;reply=ok]]"))
    assert ReasoningCompleted("rs_1", "Weighing") in reasoning
    assert transcript_of(reasoning).reasoning == ["Weighing"]
    transcript = transcript_of(retried)
    assert transcript.failure(info.exit_code) is None
    assert transcript.text == "ok"


async def test_a_failed_turn_fails_with_codexs_message(
    tmp_path: Path, fake_app_server: Path
) -> None:
    backend = backend_for(settings_for(tmp_path, fake_app_server))
    with trio.fail_after(10):
        events, info = await run_collect(
            backend, RunSpec(prompt="[[codex:mode=fail;reply=part;deltas=2;message=quota gone]]")
        )
    assert failure_of(events) == "quota gone"
    assert transcript_of(events).text == "part"
    assert info.exit_code == 0


async def test_a_resumed_thread_keeps_its_id_and_reports_the_running_total(
    tmp_path: Path, fake_app_server: Path
) -> None:
    thread = "01a213e5-1c56-7000-8000-000000000abc"
    backend = backend_for(settings_for(tmp_path, fake_app_server))
    with trio.fail_after(10):
        events, _ = await run_collect(
            backend,
            RunSpec(prompt="[[codex:mode=thread;usage=5,0,1,0]]", resume_thread_id=thread),
        )
    assert events[0] == ThreadStarted(thread)
    transcript = transcript_of(events)
    assert transcript.text == f"thread={thread} resumed=true"
    # The replayed usage of the older turn (100, 0, 10, 0) is the baseline, not this turn's.
    assert transcript.usage == Usage(105, 0, 11, 0)


@pytest.mark.parametrize(
    ("process", "prompt", "expected"),
    [
        ("init=silent", "", "did not answer initialize within 1 s"),
        ("init=garbage", "", "broke the protocol: an output line of 34 bytes is not JSON"),
        (
            "init=exit;code=4",
            "",
            "closed its output before answering initialize (exit status 4): "
            "Error: fake app-server gave up before initialize",
        ),
        ("config=invalid", "", "Codex could not load its configuration (config.toml:1:9:"),
        ("", "[[codex:mode=garbage;deltas=2]]", "broke the protocol"),
        (
            "",
            "[[codex:mode=die;deltas=2;code=3]]",
            "closed its output before the turn completed (exit status 3)",
        ),
        ("", "[[codex:mode=nonsense]]", "fake app-server: unknown mode nonsense"),
    ],
)
async def test_a_misbehaving_child_ends_the_run_with_one_clear_failure(
    tmp_path: Path, fake_app_server: Path, process: str, prompt: str, expected: str
) -> None:
    """Silence, garbage, death and a config Codex could not load: one TurnFailed naming the
    problem, never a hang, and nothing left running."""
    settings = settings_for(tmp_path, fake_app_server, process=process, kill_grace=0.5)
    backend = backend_for(settings, rpc_timeout=1.0)
    with trio.fail_after(10):
        began = trio.current_time()
        events, _ = await run_collect(backend, RunSpec(prompt=prompt))
        elapsed = trio.current_time() - began
        await assert_no_process_in(settings.workdir)
    assert expected in failure_of(events)
    assert elapsed < 1.0 + 0.5 + 1.5  # rpc_timeout + kill_grace + slack
    if "config" in process:
        assert not any(isinstance(e, TurnStarted) for e in events)  # no prompt was sent


async def test_cancel_kills_a_term_ignoring_child_and_grandchild(
    tmp_path: Path, fake_app_server: Path
) -> None:
    """A cancelled run (client gone) SIGTERMs the group, waits the grace, SIGKILLs it."""
    fifo = make_fifo(tmp_path)
    reaped: list[int] = []
    settings = settings_for(tmp_path, fake_app_server, kill_grace=0.3)
    backend = backend_for(settings, on_reap=reaped.append)
    prompt = f"[[codex:mode=hang;ignore_term=1;grandchild=1;notify={fifo}]]"
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            nursery.start_soon(run_collect, backend, RunSpec(prompt=prompt))
            pids = await read_notify(fifo)
            assert len(pids) == 2
            assert all(alive(p) for p in pids)
            cancelled_at = trio.current_time()
            nursery.cancel_scope.cancel(reason="test: the client left")
        latency = trio.current_time() - cancelled_at
        await assert_all_dead(pids)
    assert 0.3 <= latency < 1.3  # the grace, then SIGKILL
    assert reaped == [pids[0]]


async def test_runner_timeout_kills_the_group_and_frees_the_slot(
    tmp_path: Path, fake_app_server: Path
) -> None:
    fifo = make_fifo(tmp_path)
    settings = settings_for(tmp_path, fake_app_server, kill_grace=0.3)
    runner = CodexRunner(backend_for(settings), max_parallel=1, queue_timeout=1, exec_timeout=1.0)
    prompt = f"[[codex:mode=hang;ignore_term=1;grandchild=1;notify={fifo}]]"
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            handle = await runner.start(nursery, RunSpec(prompt=prompt))
            handle.attach()
            pids = await read_notify(fifo)
            async for _ in handle.events:
                pass
            await handle.done.wait()
            await assert_all_dead(pids)
    assert handle.error is not None
    assert handle.error.status_code == 504
    assert runner.limiter.borrowed_tokens == 0


# --------------------------------------------------------------------------- client tools

TOOLS = ToolSet(
    (
        ToolSpec("get_weather", "Weather.", {"type": "object", "properties": {}}),
        ToolSpec("get_time", "", {"type": "object", "properties": {}}),
    )
)


async def test_client_tools_are_called_and_answered_through_the_runner(
    tmp_path: Path, fake_app_server: Path
) -> None:
    """Two calls of one response: both announced before the first wait, each answered with
    the result handed to the run's bridge, and the turn goes on to its answer."""
    runner = CodexRunner(
        backend_for(settings_for(tmp_path, fake_app_server)),
        max_parallel=1,
        queue_timeout=1,
        exec_timeout=20,
    )
    prompt = "[[codex:mode=tools;call=get_weather,get_time]]"
    seen: list[CodexEvent] = []
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            handle = await runner.start(nursery, RunSpec(prompt=prompt, tools=TOOLS))
            assert handle.tools is not None
            handle.attach()
            async for event in handle.events:
                seen.append(event)
                if isinstance(event, ToolCallWaiting) and event.call_id == "call_1":
                    handle.tools.put(ToolOutput("call_2", "12:00"))
                    handle.tools.put(ToolOutput("call_1", "Sunny"))
            await handle.done.wait()
    kinds = [type(e) for e in seen if isinstance(e, ToolCallStarted | ToolCallWaiting)]
    assert kinds == [ToolCallStarted, ToolCallStarted, ToolCallWaiting, ToolCallWaiting]
    assert handle.transcript.tool_calls == [
        ToolCall("call_1", "get_weather", '{"n":1}'),
        ToolCall("call_2", "get_time", '{"n":2}'),
    ]
    assert handle.transcript.text == "tool results: Sunny | 12:00"
    assert handle.failure() is None


async def test_tools_without_a_bridge_are_refused_and_the_fake_checks_experimental(
    tmp_path: Path, fake_app_server: Path
) -> None:
    """The backend alone (no runner bridge) still registers the tools (the fake would refuse
    thread/start without experimentalApi) and refuses the call, so the turn never hangs."""
    backend = backend_for(settings_for(tmp_path, fake_app_server))
    with trio.fail_after(10):
        events, info = await run_collect(
            backend, RunSpec(prompt="[[codex:mode=tools]]", tools=TOOLS)
        )
    assert transcript_of(events).text == "tool results: error -32601"
    assert transcript_of(events).failure(info.exit_code) is None


async def test_a_tool_result_that_never_comes_ends_the_run_and_frees_the_slot(
    tmp_path: Path, fake_app_server: Path
) -> None:
    """CODEX_TOOL_RESULT_TIMEOUT bounds the wait: the run fails naming the call, the child's
    group is dead and the slot is free."""
    fifo = make_fifo(tmp_path)
    settings = settings_for(tmp_path, fake_app_server, process=f"notify={fifo}")
    runner = CodexRunner(
        backend_for(settings),
        max_parallel=1,
        queue_timeout=1,
        exec_timeout=20,
        tool_result_timeout=0.5,
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            handle = await runner.start(
                nursery, RunSpec(prompt="[[codex:mode=tools]]", tools=TOOLS)
            )
            handle.attach()
            pids = await read_notify(fifo)
            events = [event async for event in handle.events]
            await handle.done.wait()
            await assert_all_dead(pids)
    assert "no result for tool call call_1" in failure_of(events)
    assert runner.limiter.borrowed_tokens == 0


WIRE_TOOLS: list[Any] = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather.",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    },
    {"type": "function", "function": {"name": "get_time"}},
]


@pytest.mark.parametrize("stream", [False, True])
async def test_the_sdk_runs_a_two_call_tool_loop_over_http(
    tmp_path: Path, fake_app_server: Path, start_server: ServerFactory, stream: bool
) -> None:
    """The official SDK: the first answer holds both calls (finish_reason tool_calls, through
    ``chat.completions.stream()`` when streaming); the follow-up with both results resumes the
    waiting turn, whose fake answer quotes both results."""
    url = await start_server(http_app(settings_for(tmp_path, fake_app_server)))
    client = sdk(url + "/v1")
    first: list[Any] = [
        {"role": "user", "content": "[[codex:mode=tools;call=get_weather,get_time]]"}
    ]

    def call() -> Any:
        if not stream:
            return client.chat.completions.create(
                model="gpt-test", messages=first, tools=WIRE_TOOLS
            )
        with client.chat.completions.stream(
            model="gpt-test", messages=first, tools=WIRE_TOOLS
        ) as events:
            for _ in events:
                pass
            return events.get_final_completion()

    completion = await in_thread(call)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    assert [(c.id, c.function.name, c.function.arguments) for c in calls] == [
        ("call_1", "get_weather", '{"n":1}'),
        ("call_2", "get_time", '{"n":2}'),
    ]
    follow_up = [
        *first,
        choice.message.model_dump(exclude_none=True),
        {"role": "tool", "tool_call_id": "call_1", "content": "Sunny, 21C [[codex:mode=ok]]"},
        {"role": "tool", "tool_call_id": "call_2", "content": "12:00"},
    ]
    raw = await in_thread(
        lambda: client.chat.completions.with_raw_response.create(
            model="gpt-test", messages=follow_up, tools=WIRE_TOOLS
        )
    )
    assert raw.headers["x-trio-codex-tool-path"] == "waiting"
    final = raw.parse().choices[0]
    assert final.finish_reason == "stop"
    assert final.message.content is not None
    assert "Sunny, 21C" in final.message.content
    assert "12:00" in final.message.content


async def test_a_parked_turn_dies_at_the_timeout_and_the_results_are_replayed(
    tmp_path: Path, fake_app_server: Path, start_server: ServerFactory
) -> None:
    """Over HTTP: the turn waiting for results is killed at CODEX_TOOL_RESULT_TIMEOUT (its
    process gone, its slot free); the late results take the replay path and are answered."""
    settings = settings_for(tmp_path, fake_app_server, tool_result_timeout=2.0)
    spawned: list[int] = []
    app = http_app(settings, backend_for(settings, on_spawn=spawned.append))
    url = await start_server(app)
    first: list[Any] = [{"role": "user", "content": "[[codex:mode=tools]]"}]
    with trio.fail_after(20):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            answer = await client.post(
                "/v1/chat/completions",
                json={"model": "gpt-test", "messages": first, "tools": WIRE_TOOLS},
            )
            pids = list(spawned)
            assert len(pids) == 1
            message = answer.json()["choices"][0]["message"]
            assert runner_of(app).running.value == 1  # parked, holding its slot
            await assert_all_dead(pids)
            await runner_of(app).running.wait_value(0)
            assert runner_of(app).limiter.borrowed_tokens == 0
            result = {"role": "tool", "tool_call_id": "call_1", "content": "late [[codex:mode=ok]]"}
            late = await client.post(
                "/v1/chat/completions",
                json={
                    "model": "gpt-test",
                    "messages": [*first, message, result],
                    "tools": WIRE_TOOLS,
                },
            )
    assert late.status_code == 200, late.text
    assert late.headers["x-trio-codex-tool-path"] == "replay"
    assert "late" in late.json()["choices"][0]["message"]["content"]


async def test_langchain_bind_tools_runs_the_loop(
    tmp_path: Path, fake_app_server: Path, start_server: ServerFactory
) -> None:
    """LangChain's ChatOpenAI.bind_tools: the AIMessage carries the call, the ToolMessage
    resumes the waiting turn."""
    from langchain_core.messages import HumanMessage, ToolMessage
    from langchain_core.tools import tool
    from langchain_openai import ChatOpenAI

    @tool
    def get_weather(city: str) -> str:
        """The weather in a city."""
        return "Sunny"

    url = await start_server(http_app(settings_for(tmp_path, fake_app_server)))
    model = ChatOpenAI(
        model="gpt-test", base_url=url + "/v1", api_key="unused", max_retries=0
    ).bind_tools([get_weather])

    def loop() -> tuple[Any, Any]:
        history: list[Any] = [HumanMessage("[[codex:mode=tools;call=get_weather]]")]
        ai = model.invoke(history)
        history += [ai, ToolMessage("Sunny in Paris", tool_call_id=ai.tool_calls[0]["id"])]
        return ai, model.invoke(history)

    ai, final = await in_thread(loop)
    assert ai.tool_calls == [
        {"name": "get_weather", "args": {"n": 1}, "id": "call_1", "type": "tool_call"}
    ]
    assert final.content == "tool results: Sunny in Paris"


# --------------------------------------------------------------------------- startup check


async def test_startup_check_accepts_a_codex_that_answers(
    tmp_path: Path, fake_app_server: Path
) -> None:
    settings = settings_for(tmp_path, fake_app_server)
    spawned: list[int] = []
    reaped: list[int] = []
    backend = backend_for(settings, on_spawn=spawned.append, on_reap=reaped.append)
    with trio.fail_after(10):
        assert await check_app_server(backend) == "0.169.0"
        await assert_no_process_in(settings.workdir)
    assert spawned == reaped
    assert len(spawned) == 1


@pytest.mark.parametrize(
    ("process", "expected"),
    [
        (
            "version=0.150.0",
            "needs Codex CLI 0.169.0 or newer; {binary} is 0.150.0. Upgrade it",
        ),
        ("init=silent", "failed its startup handshake: codex app-server did not answer initialize"),
        ("init=exit;code=4", "closed its output before answering initialize"),
        ("config=invalid", "Codex could not load its configuration (config.toml:1:9"),
    ],
    ids=["too-old", "silent", "dies", "bad-config"],
)
async def test_startup_check_refuses_with_a_clear_message(
    tmp_path: Path, fake_app_server: Path, process: str, expected: str
) -> None:
    settings = settings_for(tmp_path, fake_app_server, process=process, kill_grace=0.3)
    backend = backend_for(settings, rpc_timeout=1.0)
    with trio.fail_after(10):
        with pytest.raises(AppServerCheckError) as refused:
            await check_app_server(backend)
        await assert_no_process_in(settings.workdir)
    assert expected.format(binary=fake_app_server) in str(refused.value)


async def test_startup_check_refuses_a_binary_that_is_not_codex(tmp_path: Path) -> None:
    backend = backend_for(settings_for(tmp_path, Path("/bin/true")))
    with (
        trio.fail_after(10),
        pytest.raises(AppServerCheckError, match="did not print a Codex version"),
    ):
        await check_app_server(backend)


def test_versions_parse_from_codex_output() -> None:
    assert parse_version("codex-cli 0.169.0") == (0, 169, 0)
    assert parse_version("codex-cli 1.2.10-alpha.3\n") == (1, 2, 10)
    assert parse_version("codex-cli") is None


# --------------------------------------------------------------------------- warm spares


@asynccontextmanager
async def serving(backend: AppServerBackend) -> AsyncIterator[None]:
    """``backend.serve`` (its warm spares) for the duration of the block."""
    async with trio.open_nursery() as nursery:
        await nursery.start(backend.serve)
        yield
        nursery.cancel_scope.cancel()


async def test_a_run_adopts_a_warm_spare_which_is_then_replaced(
    tmp_path: Path, fake_app_server: Path
) -> None:
    """The spare was initialized before the request; the run skips initialize and uses it; a
    new spare is ready once the turn is over; every group is reaped at the end."""
    spawned: list[int] = []
    reaped: list[int] = []
    settings = settings_for(tmp_path, fake_app_server)
    backend = backend_for(settings, on_spawn=spawned.append, on_reap=reaped.append, warm_spares=1)
    with trio.fail_after(15):
        async with serving(backend):
            await backend.pool.ready.wait_value(1)
            spare = spawned[0]
            events, info = await run_collect(backend, RunSpec(prompt="[[codex:mode=params]]"))
            seen = json.loads(transcript_of(events).text)
            assert not alive(spare)  # run() returned: the adopted group is dead
            await backend.pool.ready.wait_value(1)
            assert len(spawned) == 2
        await assert_all_dead(spawned)
    assert seen["pid"] == spare
    assert [r.get("method") for r in seen["requests"]] == [
        "initialize",
        "initialized",
        "thread/start",
        "turn/start",
    ]
    assert [r.get("id") for r in seen["requests"]] == [0, None, 1, 2]
    assert info.exit_code == 0
    assert sorted(reaped) == sorted(spawned)
    assert backend.pool.adopted == 1


def thread_starts(seen: dict[str, Any]) -> list[dict[str, Any]]:
    """The ``thread/start`` params the fake received, in order."""
    return [r["params"] for r in seen["requests"] if r.get("method") == "thread/start"]


async def test_a_spare_starts_a_thread_ahead_for_the_model_of_the_last_request(
    tmp_path: Path, fake_app_server: Path
) -> None:
    """Before any request the spare's thread has Codex's default model; a request for another
    model starts its own thread on the spare; the next spare's thread has that model, and the
    next such request uses it (no ``thread/start`` of its own, the same thread id)."""
    settings = settings_for(tmp_path, fake_app_server)
    backend = backend_for(settings, warm_spares=1)
    spec = RunSpec(prompt="[[codex:mode=params]]", model="gpt-test")
    with trio.fail_after(15):
        async with serving(backend):
            await backend.pool.ready.wait_value(1)
            first, _ = await run_collect(backend, spec)
            await backend.pool.ready.wait_value(1)
            second, _ = await run_collect(backend, spec)
    assert backend.pool.adopted == 2
    ahead, own = thread_starts(json.loads(transcript_of(first).text))
    assert "model" not in ahead
    assert own == {**ahead, "model": "gpt-test"}
    assert ahead == {
        "cwd": str(settings.workdir),
        "approvalPolicy": "never",
        "sandbox": "read-only",
        "ephemeral": True,
    }
    seen = json.loads(transcript_of(second).text)
    assert thread_starts(seen) == [own]
    turn = [r for r in seen["requests"] if r.get("method") == "turn/start"]
    assert [e.thread_id for e in second if isinstance(e, ThreadStarted)] == [
        turn[0]["params"]["threadId"]
    ]


async def test_a_thread_started_ahead_with_the_default_model_serves_that_model(
    tmp_path: Path, fake_app_server: Path
) -> None:
    """The spare's thread named no model and Codex answered ``fake``: a request for ``fake``
    uses it."""
    backend = backend_for(settings_for(tmp_path, fake_app_server), warm_spares=1)
    with trio.fail_after(15):
        async with serving(backend):
            await backend.pool.ready.wait_value(1)
            events, _ = await run_collect(
                backend, RunSpec(prompt="[[codex:mode=params]]", model="fake")
            )
    assert backend.pool.adopted == 1
    assert [list(p) for p in thread_starts(json.loads(transcript_of(events).text))] == [
        ["cwd", "approvalPolicy", "sandbox", "ephemeral"]
    ]


@pytest.mark.parametrize(
    ("spec", "changed"),
    [
        (RunSpec(prompt="", sandbox="workspace-write"), {"sandbox": "workspace-write"}),
        (
            RunSpec(prompt="", sandbox="workspace-write", network_access=True),
            {
                "sandbox": "workspace-write",
                "config": {"sandbox_workspace_write": {"network_access": True}},
            },
        ),
        (RunSpec(prompt="", persist=True), {"ephemeral": False}),
        (RunSpec(prompt="", model="gpt-test"), {"model": "gpt-test"}),
        (RunSpec(prompt=""), {}),  # the same parameters, but the day has changed
    ],
    ids=["sandbox", "network", "persist", "model", "next-day"],
)
async def test_a_run_that_asks_for_another_thread_starts_its_own_on_the_spare(
    tmp_path: Path, fake_app_server: Path, spec: RunSpec, changed: dict[str, Any]
) -> None:
    """A thread ahead is used only when it is exactly the one the run would start, on the same
    day (Codex's context carries the date): otherwise the run starts its own on the spare."""
    calls = itertools.count()
    next_day = 0 if changed else 1  # the first call stamps the thread ahead, the next one checks

    def today() -> datetime.date:
        return datetime.date(2026, 1, 1) + datetime.timedelta(days=min(next(calls), next_day))

    backend = backend_for(settings_for(tmp_path, fake_app_server), warm_spares=1, today=today)
    spec = dataclasses.replace(spec, prompt="[[codex:mode=params]]")
    with trio.fail_after(15):
        async with serving(backend):
            await backend.pool.ready.wait_value(1)
            events, _ = await run_collect(backend, spec)
    assert backend.pool.adopted == 1
    ahead, own = thread_starts(json.loads(transcript_of(events).text))
    assert own == {**ahead, **changed}


async def test_an_adopted_spare_is_replaced_when_its_turn_ends(
    tmp_path: Path, fake_app_server: Path
) -> None:
    """Starting a Codex costs CPU a short turn needs: the replacement is spawned after the turn
    ended (here ``warm_replace_after`` is far away), although the turn waited on the test."""
    gate = make_fifo(tmp_path, "gate")
    fifo = make_fifo(tmp_path)
    seen: list[str] = []
    backend = backend_for(
        settings_for(tmp_path, fake_app_server),
        on_spawn=lambda _: seen.append("spawn"),
        warm_spares=1,
        warm_replace_after=60,
    )

    async def emit(event: CodexEvent) -> None:
        seen.append(type(event).__name__)

    prompt = f"[[codex:mode=stream_gate;count=1;notify={fifo};gate={gate}]]"
    with trio.fail_after(15):
        async with serving(backend), trio.open_nursery() as nursery:
            await backend.pool.ready.wait_value(1)
            nursery.start_soon(backend.run, RunSpec(prompt=prompt), emit)
            await read_notify(fifo)  # the turn is under way, held at the gate
            await release_gate(gate)
            await backend.pool.ready.wait_value(1)
    assert seen.count("spawn") == 2
    assert seen.index("spawn", 1) > seen.index("TurnCompleted")


async def test_an_adopted_spare_whose_turn_runs_long_is_replaced_meanwhile(
    tmp_path: Path, fake_app_server: Path
) -> None:
    fifo = make_fifo(tmp_path)
    backend = backend_for(
        settings_for(tmp_path, fake_app_server), warm_spares=1, warm_replace_after=0.1
    )
    with trio.fail_after(15):
        async with serving(backend), trio.open_nursery() as nursery:
            await backend.pool.ready.wait_value(1)
            nursery.start_soon(
                run_collect, backend, RunSpec(prompt=f"[[codex:mode=hang;notify={fifo}]]")
            )
            await read_notify(fifo)
            await backend.pool.ready.wait_value(1)  # while the turn still hangs
            assert backend.pool.adopted == 1
            nursery.cancel_scope.cancel()


async def test_without_serve_a_run_starts_its_own_child(
    tmp_path: Path, fake_app_server: Path
) -> None:
    spawned: list[int] = []
    backend = backend_for(
        settings_for(tmp_path, fake_app_server), on_spawn=spawned.append, warm_spares=1
    )
    with trio.fail_after(10):
        events, _ = await run_collect(backend, RunSpec(prompt="[[codex:mode=params]]"))
    assert json.loads(transcript_of(events).text)["pid"] == spawned[0]
    assert backend.pool.adopted == 0


async def test_stopping_the_pool_kills_idle_spares(tmp_path: Path, fake_app_server: Path) -> None:
    spawned: list[int] = []
    reaped: list[int] = []
    settings = settings_for(tmp_path, fake_app_server)
    backend = backend_for(settings, on_spawn=spawned.append, on_reap=reaped.append, warm_spares=2)
    with trio.fail_after(15):
        async with serving(backend):
            await backend.pool.ready.wait_value(2)
            assert all(alive(p) for p in spawned)
        assert not any(alive(p) for p in spawned)  # serve returns once they are reaped
        await assert_no_process_in(settings.workdir)
    assert sorted(reaped) == sorted(spawned)
    assert len(spawned) == 2


async def test_a_spare_that_cannot_start_is_retried_with_backoff(
    tmp_path: Path, fake_app_server: Path
) -> None:
    """Each spare dies before initialize: the gaps between spawns double from the base."""
    spawn_times: list[float] = []
    settings = settings_for(tmp_path, fake_app_server, process="init=exit;code=4")
    backend = backend_for(
        settings,
        on_spawn=lambda _: spawn_times.append(trio.current_time()),
        warm_spares=1,
        warm_backoff_base=0.1,
    )
    with trio.fail_after(15):
        async with serving(backend):
            await backend.pool.failures.wait_value(lambda n: n >= 4)
            assert backend.pool.ready.value == 0
        await assert_no_process_in(settings.workdir)
    gaps = [b - a for a, b in itertools.pairwise(spawn_times[:4])]
    for n, gap in enumerate(gaps):
        assert gap >= 0.1 * 2**n, (n, gaps)
    assert backend.pool.adopted == 0


async def test_a_spare_that_dies_idle_is_never_adopted_and_is_replaced(
    tmp_path: Path, fake_app_server: Path
) -> None:
    spawned: list[int] = []
    settings = settings_for(tmp_path, fake_app_server)
    backend = backend_for(settings, on_spawn=spawned.append, warm_spares=1, warm_backoff_base=0.05)
    with trio.fail_after(15):
        async with serving(backend):
            await backend.pool.ready.wait_value(1)
            os.kill(spawned[0], signal.SIGKILL)
            await backend.pool.failures.wait_value(1)
            await backend.pool.ready.wait_value(1)
            events, _ = await run_collect(backend, RunSpec(prompt="[[codex:mode=params]]"))
    assert len(spawned) >= 2
    assert json.loads(transcript_of(events).text)["pid"] == spawned[1]


async def test_cancelling_a_run_on_a_warm_spare_kills_child_and_grandchild(
    tmp_path: Path, fake_app_server: Path
) -> None:
    fifo = make_fifo(tmp_path)
    settings = settings_for(tmp_path, fake_app_server, kill_grace=0.3)
    backend = backend_for(settings, warm_spares=1)
    prompt = f"[[codex:mode=hang;ignore_term=1;grandchild=1;notify={fifo}]]"
    with trio.fail_after(15):
        async with serving(backend):
            await backend.pool.ready.wait_value(1)
            async with trio.open_nursery() as nursery:
                nursery.start_soon(run_collect, backend, RunSpec(prompt=prompt))
                pids = await read_notify(fifo)
                cancelled_at = trio.current_time()
                nursery.cancel_scope.cancel(reason="test: the client left")
            latency = trio.current_time() - cancelled_at
            assert not alive(pids[0])  # run() returned only once the group was dead
            await assert_all_dead(pids)
    assert backend.pool.adopted == 1
    assert 0.3 <= latency < 1.3


async def test_a_warm_spare_serves_a_stream_over_http(
    tmp_path: Path, fake_app_server: Path, start_server: ServerFactory
) -> None:
    settings = settings_for(tmp_path, fake_app_server)
    backend = backend_for(settings, warm_spares=1)
    url = await start_server(http_app(settings, backend))
    with trio.fail_after(15):
        async with serving(backend):
            await backend.pool.ready.wait_value(1)
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                response = await client.post(
                    "/v1/chat/completions",
                    json=chat_body("[[codex:reply=warm hello;deltas=2]]", stream=True),
                )
    assert check_stream(response.content).text == "warm hello"
    assert backend.pool.adopted == 1


def test_warm_spares_setting(tmp_path: Path, fake_app_server: Path) -> None:
    env = {"CODEX_PATH": str(fake_app_server), "CODEX_HOME": str(tmp_path / "home")}
    assert Settings.from_env(env, make_workdir=False).warm_spares == 1
    settings = Settings.from_env({**env, "CODEX_WARM_SPARES": "3"}, make_workdir=False)
    assert settings.warm_spares == 3
    assert AppServerBackend(settings).pool.size == 3
    with pytest.raises(SettingsError, match="CODEX_WARM_SPARES: -1 is below the minimum of 0"):
        Settings.from_env({**env, "CODEX_WARM_SPARES": "-1"}, make_workdir=False)


# --------------------------------------------------------------------------- over HTTP


def http_app(settings: Settings, backend: AppServerBackend | None = None) -> QuartTrio:
    """The app for ``settings``: ``make_backend`` picks the app-server backend (with the reaper)
    unless ``backend`` is given."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(settings.workdir)}
    return create_app(settings, backend=backend, catalog=TEST_CATALOG, environ=env)


@asynccontextmanager
async def sse_lines(url: str, path: str, body: dict[str, Any]) -> AsyncIterator[AsyncIterator[str]]:
    """POST ``body`` and yield the response's SSE ``data:`` payloads as they arrive."""
    async with (
        httpx.AsyncClient(base_url=url, timeout=30) as client,
        client.stream("POST", path, json=body) as response,
    ):
        assert response.status_code == 200

        async def payloads() -> AsyncIterator[str]:
            async for line in response.aiter_lines():
                if line.startswith("data: "):
                    yield line.removeprefix("data: ")

        yield payloads()


def chat_content(payload: str) -> str | None:
    if payload == "[DONE]":
        return None
    obj = json.loads(payload)
    assert "error" not in obj, obj
    return "".join(c["delta"].get("content") or "" for c in obj["choices"]) or None


def responses_delta(payload: str) -> str | None:
    obj = json.loads(payload)
    assert obj["type"] != "response.failed", obj
    return obj["delta"] if obj["type"] == "response.output_text.delta" else None


@pytest.mark.parametrize(
    ("path", "body", "content"),
    [
        ("/v1/chat/completions", {"stream": True, **chat_body("x")}, chat_content),
        ("/v1/responses", {"model": "gpt-test", "input": "x", "stream": True}, responses_delta),
    ],
    ids=["chat", "responses"],
)
async def test_content_reaches_the_client_while_codex_is_still_writing(
    tmp_path: Path,
    fake_app_server: Path,
    start_server: ServerFactory,
    path: str,
    body: dict[str, Any],
    content: Callable[[str], str | None],
) -> None:
    """The first three deltas are read by the client while the fake is blocked before writing
    the next three: each arrives as its own chunk, before the turn has ended."""
    fifo, gate = make_fifo(tmp_path), make_fifo(tmp_path, "gate")
    url = await start_server(http_app(settings_for(tmp_path, fake_app_server)))
    directive = f"[[codex:mode=stream_gate;count=3;notify={fifo};gate={gate}]]"
    if "messages" in body:
        body = {**body, "messages": [{"role": "user", "content": directive}]}
    else:
        body = {**body, "input": directive}
    chunks: list[tuple[float, str]] = []
    with trio.fail_after(15):
        async with sse_lines(url, path, body) as payloads:
            await read_notify(fifo)  # the fake has written 3 deltas and now waits on the gate
            async for payload in payloads:
                text = content(payload)
                if text:
                    chunks.append((trio.current_time(), text))
                if len(chunks) == 3:
                    break
            released = trio.current_time()
            await release_gate(gate)
            async for payload in payloads:
                text = content(payload)
                if text:
                    chunks.append((trio.current_time(), text))
    assert [text for _, text in chunks] == [f"part-{n} " for n in range(6)]
    assert all(at < released for at, _ in chunks[:3])
    assert all(at > released for at, _ in chunks[3:])


async def test_an_approval_is_declined_over_http(
    tmp_path: Path, fake_app_server: Path, start_server: ServerFactory
) -> None:
    url = await start_server(http_app(settings_for(tmp_path, fake_app_server)))
    with trio.fail_after(15):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            response = await client.post(
                "/v1/chat/completions", json=chat_body("[[codex:mode=approval]]")
            )
    assert response.status_code == 200, response.text
    assert response.json()["choices"][0]["message"]["content"] == "decision=decline tool=-32601"


@pytest.mark.parametrize(
    ("process", "prompt", "expected"),
    [
        ("init=silent", "hi", "did not answer initialize within 1 s"),
        ("", "[[codex:mode=garbage]]", "broke the protocol"),
        ("", "[[codex:mode=die;code=3]]", "closed its output before the turn completed"),
    ],
    ids=["no-initialize-answer", "malformed-line", "death-mid-turn"],
)
async def test_protocol_failures_are_a_clean_502(
    tmp_path: Path,
    fake_app_server: Path,
    start_server: ServerFactory,
    process: str,
    prompt: str,
    expected: str,
) -> None:
    """No answer, garbage, death: 502 within the deadline, nothing left, the slot free."""
    fifo = make_fifo(tmp_path)
    settings = settings_for(
        tmp_path, fake_app_server, process=f"{process};notify={fifo}", kill_grace=0.5
    )
    app = http_app(settings, backend_for(settings, rpc_timeout=1.0))
    url = await start_server(app)
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:
            pids: list[int] = []

            async def pid() -> None:
                pids.extend(await read_notify(fifo))

            nursery.start_soon(pid)
            began = trio.current_time()
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                response = await client.post("/v1/chat/completions", json=chat_body(prompt))
            elapsed = trio.current_time() - began
        await assert_all_dead(pids)
        await assert_no_process_in(settings.workdir)
        await runner_of(app).running.wait_value(0)
    assert response.status_code == 502, response.text
    error = response.json()["error"]
    assert error["code"] == "upstream_error"
    assert expected in error["message"]
    assert elapsed < 1.0 + 0.5 + 2.0
    assert runner_of(app).limiter.borrowed_tokens == 0


async def test_death_mid_stream_is_an_in_stream_error_after_the_content(
    tmp_path: Path, fake_app_server: Path, start_server: ServerFactory
) -> None:
    settings = settings_for(tmp_path, fake_app_server)
    url = await start_server(http_app(settings))
    body = chat_body("[[codex:mode=die;reply=abcd;deltas=2]]", stream=True)
    with trio.fail_after(15):
        async with httpx.AsyncClient(base_url=url, timeout=30) as client:
            response = await client.post("/v1/chat/completions", json=body)
        await assert_no_process_in(settings.workdir)
    outcome = check_stream(response.content)
    assert outcome.text == "abcd"
    assert outcome.error is not None
    assert "closed its output before the turn completed" in outcome.error["message"]


@pytest.mark.parametrize("how", ["client-disconnect", "timeout"])
async def test_term_ignoring_child_and_grandchild_die_over_http(
    tmp_path: Path, fake_app_server: Path, start_server: ServerFactory, how: str
) -> None:
    """A stream whose client leaves, or whose run times out: both processes die, the slot frees."""
    fifo = make_fifo(tmp_path)
    settings = settings_for(
        tmp_path,
        fake_app_server,
        kill_grace=0.3,
        timeout=30.0 if how == "client-disconnect" else 1.0,
    )
    app = http_app(settings)
    url = await start_server(app)
    body = chat_body(f"[[codex:mode=hang;ignore_term=1;grandchild=1;notify={fifo}]]", stream=True)
    received: list[bytes] = []
    with trio.fail_after(15):
        async with trio.open_nursery() as nursery:

            async def call() -> None:
                async with (
                    httpx.AsyncClient(base_url=url, timeout=30) as client,
                    client.stream("POST", "/v1/chat/completions", json=body) as response,
                ):
                    received.extend([chunk async for chunk in response.aiter_raw()])

            nursery.start_soon(call)
            pids = await read_notify(fifo)
            assert len(pids) == 2
            if how == "client-disconnect":
                nursery.cancel_scope.cancel(reason="test: the client disconnects")
        await assert_all_dead(pids)
        await runner_of(app).running.wait_value(0)
    assert runner_of(app).limiter.borrowed_tokens == 0
    if how == "timeout":
        outcome = check_stream(b"".join(received))
        assert outcome.error is not None
        assert "CODEX_TIMEOUT" in outcome.error["message"]


# --------------------------------------------------------------------------- the real Codex CLI


async def serve_real_app_server(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory, **overrides: Any
) -> tuple[QuartTrio, str]:
    """The app on real Hypercorn with ``CODEX_BACKEND=app-server`` and the real CLI against
    ``upstream`` (its catalog discovered from ``codex debug models``); returns the app and its
    ``/v1`` URL."""
    server = await serve_real_codex(
        tmp_path, upstream.base_url, start_server, backend="app-server", **overrides
    )
    return server.app, server.v1


STREAMED = "[[fake:chunks=20;delay_ms=100]]"


def chunk_times_chat(url: str) -> list[tuple[float, str]]:
    """Stream a chat completion with the SDK; (monotonic time, text) of each content chunk."""
    seen: list[tuple[float, str]] = []
    with (
        sdk(url) as client,
        client.chat.completions.create(
            model="fake-model",
            messages=[{"role": "user", "content": f"tell me {STREAMED}"}],
            stream=True,
        ) as stream,
    ):
        for chunk in stream:
            now = time.monotonic()
            seen.extend((now, c.delta.content) for c in chunk.choices if c.delta.content)
    return seen


def chunk_times_responses(url: str) -> tuple[list[tuple[float, str]], str]:
    """Stream a response with the SDK's ``responses.stream`` helper; the deltas and the final
    text."""
    seen: list[tuple[float, str]] = []
    with (
        sdk(url) as client,
        client.responses.stream(model="fake-model", input=f"tell me {STREAMED}") as stream,
    ):
        for event in stream:
            if event.type == "response.output_text.delta":
                seen += [(time.monotonic(), event.delta)]
        final = stream.get_final_response()
    return seen, final.output_text


@pytest.mark.realcodex
async def test_real_codex_streams_chat_deltas_as_they_come(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """20 upstream deltas 100 ms apart reach the SDK as >= 15 chunks spread over >= 1 s."""
    _, url = await serve_real_app_server(tmp_path, upstream, start_server)
    seen = await in_thread(lambda: chunk_times_chat(url), fail_after=60)
    assert len(seen) >= 15, seen
    assert seen[-1][0] - seen[0][0] >= 1.0
    assert "".join(text for _, text in seen) == "Hello from the fake upstream."


@pytest.mark.realcodex
async def test_real_codex_streams_responses_deltas_as_they_come(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    _, url = await serve_real_app_server(tmp_path, upstream, start_server)
    seen, final = await in_thread(lambda: chunk_times_responses(url), fail_after=60)
    assert len(seen) >= 15, seen
    assert seen[-1][0] - seen[0][0] >= 1.0
    assert "".join(text for _, text in seen) == final == "Hello from the fake upstream."


@pytest.mark.realcodex
async def test_real_codex_continues_a_conversation_with_the_requests_own_usage(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """previous_response_id resumes the thread (thread/resume) with its history; each response
    reports its own usage, as with exec."""
    _, url = await serve_real_app_server(tmp_path, upstream, start_server)

    def conversation() -> tuple[Any, Any]:
        with sdk(url) as client:
            first = client.responses.create(
                model="fake-model",
                input="remember PAPAYA [[fake:mode=echo;input_tokens=100;output_tokens=10]]",
            )
            second = client.responses.create(
                model="fake-model",
                input="what was it? [[fake:mode=echo;input_tokens=250;output_tokens=20]]",
                previous_response_id=first.id,
            )
            return first, second

    first, second = await in_thread(conversation, fail_after=90)
    assert first.usage.input_tokens == 100
    assert second.usage.input_tokens == 250
    assert second.usage.output_tokens == 20
    history = json.loads(second.output_text)
    assert history[0] == ["user", "remember PAPAYA"]
    assert history[-1] == ["user", "what was it?"]


@pytest.mark.realcodex
async def test_real_codex_warm_spare_streams_a_turn(tmp_path: Path, upstream: FakeUpstream) -> None:
    """A spare of the real CLI, initialized ahead, is adopted and streams every delta."""
    codex_home = write_codex_home(tmp_path / "codex-home", upstream.base_url)
    settings = make_settings(
        tmp_path, codex_path=require_codex_cli(), codex_home=codex_home, backend="app-server"
    )
    environ = {
        "PATH": os.environ.get("PATH", os.defpath),
        "HOME": str(private_home(tmp_path)),
        "FAKE_API_KEY": FAKE_API_KEY,
    }
    spawned: list[int] = []
    backend = AppServerBackend(
        settings,
        environ=environ,
        extra_env_names=("FAKE_API_KEY",),
        on_spawn=spawned.append,
        warm_spares=1,
    )
    with trio.fail_after(60):
        async with serving(backend):
            await backend.pool.ready.wait_value(1)
            events, info = await run_collect(backend, RunSpec(prompt="hi [[fake:chunks=5]]"))
        await assert_all_dead(spawned)
    deltas = [e for e in events if isinstance(e, TextDelta)]
    assert len(deltas) == 5
    transcript = transcript_of(events)
    assert transcript.text == "Hello from the fake upstream."
    assert transcript.failure(info.exit_code) is None
    assert backend.pool.adopted == 1


@pytest.mark.realcodex
async def test_real_codex_passes_the_startup_check(tmp_path: Path) -> None:
    """The check reports the version the CLI itself prints (0.169.0, or the newest release in
    the tests_cli_latest session)."""
    settings = make_settings(tmp_path, codex_path=require_codex_cli(), backend="app-server")
    printed = await trio.run_process([settings.codex_path, "--version"], capture_stdout=True)
    version = parse_version(printed.stdout.decode())
    assert version is not None
    with trio.fail_after(30):
        assert await check_app_server(backend_for(settings)) == ".".join(map(str, version))


@pytest.mark.realcodex
async def test_real_codex_with_a_broken_config_fails_the_startup_check(tmp_path: Path) -> None:
    """app-server would go on with the default provider; the check refuses instead."""
    settings = make_settings(tmp_path, codex_path=require_codex_cli(), backend="app-server")
    (settings.codex_home / "config.toml").write_text("model = \n")
    with (
        trio.fail_after(30),
        pytest.raises(AppServerCheckError, match="could not load its configuration"),
    ):
        await check_app_server(backend_for(settings))


@pytest.mark.realcodex
async def test_real_codex_with_a_broken_config_sends_no_prompt(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """A config.toml broken after startup: 502 naming it, and the upstream saw no request."""
    _, url = await serve_real_app_server(tmp_path, upstream, start_server)
    (tmp_path / "codex-home" / "config.toml").write_text("model = \n")
    with trio.fail_after(60):
        async with httpx.AsyncClient(timeout=60) as client:
            response = await client.post(
                url + "/chat/completions", json={**chat_body("secret"), "model": "fake-model"}
            )
    assert response.status_code == 502, response.text
    # thread/start re-reads the config and refuses it (the configWarning check is the backstop).
    message = response.json()["error"]["message"]
    assert re.search(r"(could not|failed to) load (its )?configuration", message), message
    assert upstream.requests() == []


@pytest.mark.realcodex
async def test_real_codex_failure_is_an_openai_error(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    _, url = await serve_real_app_server(tmp_path, upstream, start_server)

    def call() -> None:
        with sdk(url) as client:
            client.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": "hi [[fake:mode=error;status=429]]"}],
            )

    with pytest.raises(openai.RateLimitError) as caught:
        await in_thread(call, fail_after=60)
    assert caught.value.status_code == 429


async def test_the_app_starts_checks_and_stops_its_warm_spares(
    tmp_path: Path, fake_app_server: Path
) -> None:
    """create_app's own wiring: the startup check passes, a spare is spawned before any
    request, a request adopts it (a replacement follows), and when the server stops every
    group is gone: spares die with the server, after the runs."""
    settings = settings_for(tmp_path, fake_app_server, warm_spares=1)
    app = http_app(settings)
    reaper = components(app).reaper
    assert reaper is not None
    seen: set[int] = set()
    async with trio.open_nursery() as nursery:
        config = Config()
        config.bind = ["127.0.0.1:0"]
        config.accesslog = None
        config.graceful_timeout = 1.0
        stop = trio.Event()
        binds: list[str] = await nursery.start(
            partial(serve, app, config, shutdown_trigger=stop.wait)
        )
        backend = components(app).runner.backend
        assert isinstance(backend, AppServerBackend)
        with trio.fail_after(10):
            await reaper.count.wait_value(1)
            await backend.pool.ready.wait_value(1)
        first = set(reaper.live)
        seen |= first
        async with httpx.AsyncClient(base_url=binds[0], timeout=30) as client:
            ready = (await client.get("/readyz")).json()
            metrics = (await client.get("/metrics")).text
            r = await client.post(
                "/v1/chat/completions", json=chat_body("[[codex:reply=warm wiring]]")
            )
            after = (await client.get("/status.json")).json()
        assert r.status_code == 200, r.text
        assert r.json()["choices"][0]["message"]["content"] == "warm wiring"
        # The operator sees the spares: /readyz, /metrics and /status.
        assert ready["warm_spares"] == {"configured": 1, "ready": 1, "adopted": 0, "failed": 0}
        assert "\ntrio_codex_warm_spares 1.0\n" in metrics
        assert "\ntrio_codex_warm_spares_adopted_total 0.0\n" in metrics
        assert after["warm_spares"]["adopted"] == 1
        with trio.fail_after(10):
            await reaper.count.wait_value(lambda n: n >= 1 and set(reaper.live) != first)
        seen |= set(reaper.live)
        stop.set()
    await assert_all_dead(sorted(seen))
    assert reaper.live == set()


@pytest.mark.realcodex
@pytest.mark.parametrize("stream", [False, True])
async def test_real_codex_chat_tool_loop(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory, stream: bool
) -> None:
    """The real CLI offers the client's tools upstream beside its own; the fake model calls
    both in one response; the SDK gets both calls, and the follow-up with the results resumes
    the waiting turn, whose next upstream request carries them and whose answer quotes them."""
    _, url = await serve_real_app_server(tmp_path, upstream, start_server)
    first: list[Any] = [
        {"role": "user", "content": "Weather? [[fake:call_tool=get_weather,get_time]]"}
    ]

    def loop() -> tuple[Any, Any]:
        completion: Any
        with sdk(url) as client:
            if stream:
                with client.chat.completions.stream(
                    model="fake-model", messages=first, tools=WIRE_TOOLS
                ) as events:
                    for _ in events:
                        pass
                    completion = events.get_final_completion()
            else:
                completion = client.chat.completions.create(
                    model="fake-model", messages=first, tools=WIRE_TOOLS
                )
            message = completion.choices[0].message
            results: list[Any] = [
                {"role": "tool", "tool_call_id": call.id, "content": f"result {n}"}
                for n, call in enumerate(message.tool_calls or [], 1)
            ]
            results[-1]["content"] += " [[fake:mode=echo]]"
            final = client.chat.completions.create(
                model="fake-model",
                messages=[*first, cast(Any, message.model_dump(exclude_none=True)), *results],
                tools=WIRE_TOOLS,
            )
            return completion, final

    completion, final = await in_thread(loop, fail_after=90)
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls
    # Codex offers dynamic tools upstream in no fixed order, and the fake calls in offer order.
    by_name = {c.function.name: json.loads(c.function.arguments) for c in calls}
    assert by_name == {"get_weather": {"city": "example"}, "get_time": {}}
    offered = upstream.responses_requests()[0]["body"]["tools"]
    names = [t.get("name") for t in offered]
    assert {"get_weather", "get_time", "exec_command"} <= set(names)
    assert final.choices[0].finish_reason == "stop"
    assert "result 1" in (final.choices[0].message.content or "")
    # The waiting path: the same turn's next upstream request carries both results.
    requests = upstream.responses_requests()
    assert len(requests) == 2
    tail = [i for i in requests[1]["body"]["input"] if i.get("type") == "function_call_output"]
    assert sorted(i["output"] for i in tail) == ["result 1", "result 2 [[fake:mode=echo]]"]
