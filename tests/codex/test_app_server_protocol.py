"""The app-server protocol without processes: what trio_codex sends (``app_protocol``), how a
turn's notifications become events (``TurnMapper``), and the JSON-RPC connection (``jsonrpc``)
over in-memory streams (every wait bounded by the autojump clock or ``fail_after``)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from trio.testing import MockClock

from trio_codex.codex.app_protocol import (
    OPT_OUT_NOTIFICATIONS,
    TurnMapper,
    fatal_config_warning,
    initialize_params,
    item_type_name,
    server_request_reply,
    thread_id_of,
    thread_request,
    tool_call_id,
    tool_call_reply,
    turn_id_of,
    turn_start_params,
)
from trio_codex.codex.app_server import app_server_argv
from trio_codex.codex.command import FAST_FLAGS
from trio_codex.codex.jsonrpc import (
    METHOD_NOT_FOUND,
    Notification,
    ProtocolError,
    RpcConnection,
    RpcError,
    ServerRequest,
)
from trio_codex.codex.localonly import LOCAL_ONLY_CODEX_ARGS
from trio_codex.run.events import (
    CodexEvent,
    ErrorEvent,
    ItemEvent,
    MessageCompleted,
    ReasoningCompleted,
    TextDelta,
    ToolCallStarted,
    Transcript,
    TurnCompleted,
    TurnFailed,
    Usage,
)
from trio_codex.run.runner import RunSpec
from trio_codex.run.tools import ToolCall, ToolOutput, ToolSet, ToolSpec

WORKDIR = Path("/srv/work")
TID = "01a213e0-c368-7000-8000-000000000001"
TURN = "01a213e0-c3aa-7000-8000-000000000002"


# --------------------------------------------------------------------------- what is sent


def test_argv_puts_the_fast_flags_before_the_subcommand() -> None:
    """The flags exec gets (and local-only's) are global flags ahead of ``app-server``."""
    assert app_server_argv(Path("/bin/codex"), local_only=False) == (
        "/bin/codex",
        *FAST_FLAGS,
        "app-server",
    )
    local = app_server_argv(Path("/bin/codex"), local_only=True)
    assert local[-1] == "app-server"
    assert local[1:-1] == (*FAST_FLAGS, *LOCAL_ONLY_CODEX_ARGS)


def test_initialize_stays_on_the_stable_surface_and_keeps_the_notifications_it_maps() -> None:
    params = initialize_params("1.2.3")
    assert params["clientInfo"] == {"name": "trio_codex", "title": None, "version": "1.2.3"}
    assert params["capabilities"]["experimentalApi"] is False
    opted_out = set(params["capabilities"]["optOutNotificationMethods"])
    assert opted_out == set(OPT_OUT_NOTIFICATIONS)
    mapped = {
        "item/agentMessage/delta",
        "item/completed",
        "item/started",
        "thread/tokenUsage/updated",
        "error",
        "turn/completed",
        "configWarning",
    }
    assert not opted_out & mapped


TOOLS = ToolSet((ToolSpec("get_weather", "Weather.", {"type": "object", "properties": {}}),))


def test_client_tools_ask_for_the_experimental_api_and_are_registered_at_thread_start() -> None:
    """dynamicTools only exist on thread/start and need experimentalApi (APP_SERVER.md 7.1)."""
    assert initialize_params("1", experimental=True)["capabilities"]["experimentalApi"] is True
    spec = RunSpec(prompt="p", tools=TOOLS)
    method, params = thread_request(spec, workdir=WORKDIR)
    assert method == "thread/start"
    assert params["dynamicTools"] == [
        {
            "type": "function",
            "name": "get_weather",
            "description": "Weather.",
            "inputSchema": {"type": "object", "properties": {}},
        }
    ]
    assert "dynamicTools" not in thread_request(RunSpec(prompt="p"), workdir=WORKDIR)[1]


def test_a_dynamic_tool_call_becomes_one_event_with_json_text_arguments() -> None:
    """item/started carries parsed arguments; the event has them as compact JSON text, and
    item/completed of the same call adds nothing."""
    mapper = TurnMapper(TURN)
    item = {
        "type": "dynamicToolCall",
        "id": "call_abc",
        "tool": "get_weather",
        "arguments": {"city": "Paris"},
        "status": "inProgress",
    }
    started = mapper.feed("item/started", {"turnId": TURN, "item": item})
    assert started == [ToolCallStarted(ToolCall("call_abc", "get_weather", '{"city":"Paris"}'))]
    done = {**item, "status": "completed", "success": True}
    assert mapper.feed("item/completed", {"turnId": TURN, "item": done}) == []


def test_a_tool_result_is_answered_as_text_then_images() -> None:
    assert tool_call_id({"callId": "call_abc"}) == "call_abc"
    assert tool_call_reply(ToolOutput("c", "Sunny")) == {
        "success": True,
        "contentItems": [{"type": "inputText", "text": "Sunny"}],
    }
    assert tool_call_reply(ToolOutput("c", "", ("data:image/png;base64,AA",)))["contentItems"] == [
        {"type": "inputImage", "imageUrl": "data:image/png;base64,AA"}
    ]


def test_new_thread_never_asks_for_approval_and_names_its_sandbox() -> None:
    method, params = thread_request(RunSpec(prompt="p", model="gpt-test"), workdir=WORKDIR)
    assert method == "thread/start"
    assert params == {
        "cwd": "/srv/work",
        "approvalPolicy": "never",
        "sandbox": "read-only",
        "model": "gpt-test",
        "ephemeral": True,
    }


def test_persisted_thread_with_network_gets_the_workspace_config() -> None:
    spec = RunSpec(prompt="p", sandbox="workspace-write", network_access=True, persist=True)
    _, params = thread_request(spec, workdir=WORKDIR)
    assert params["ephemeral"] is False
    assert params["sandbox"] == "workspace-write"
    assert params["config"] == {"sandbox_workspace_write": {"network_access": True}}
    assert "model" not in params


def test_network_access_is_only_configured_for_workspace_write() -> None:
    spec = RunSpec(prompt="p", sandbox="read-only", network_access=True)
    assert "config" not in thread_request(spec, workdir=WORKDIR)[1]


def test_resume_continues_the_thread_with_approvals_off() -> None:
    spec = RunSpec(prompt="p", resume_thread_id=TID, sandbox="workspace-write")
    method, params = thread_request(spec, workdir=WORKDIR)
    assert method == "thread/resume"
    assert params["threadId"] == TID
    assert params["approvalPolicy"] == "never"
    assert params["sandbox"] == "workspace-write"
    assert params["excludeTurns"] is True
    assert "ephemeral" not in params


def test_a_branch_forks_the_thread_at_its_turn_into_a_persisted_thread() -> None:
    """thread/fork at the turn, persisted (its response can be continued), no history back."""
    spec = RunSpec(prompt="p", resume_thread_id=TID, fork_at_turn="turn-1", sandbox="read-only")
    method, params = thread_request(spec, workdir=WORKDIR)
    assert method == "thread/fork"
    assert (params["threadId"], params["lastTurnId"]) == (TID, "turn-1")
    assert (params["excludeTurns"], params["ephemeral"]) == (True, False)
    assert (params["approvalPolicy"], params["sandbox"]) == ("never", "read-only")


def test_a_forks_usage_is_its_turns_own_not_the_inherited_total() -> None:
    """Measured: a fork at a turn whose thread total was 100 reports total 250 after a
    150-token turn; the branch's usage is the 150 (a fork is mapped like a new thread)."""
    events = fold(
        TurnMapper(TURN), [token_usage((150, 0, 15, 0), (250, 0, 25, 0)), turn_completed()]
    )
    assert events == [TurnCompleted(Usage(150, 0, 15, 0))]


def test_turn_start_sends_the_prompt_then_one_local_image_per_file() -> None:
    spec = RunSpec(
        prompt="look", images=(Path("/tmp/a.png"), Path("/tmp/b.jpg")), reasoning_effort="high"
    )
    params = turn_start_params(spec, TID, output_schema={"type": "object"})
    assert params == {
        "threadId": TID,
        "input": [
            {"type": "text", "text": "look", "text_elements": []},
            {"type": "localImage", "path": "/tmp/a.png"},
            {"type": "localImage", "path": "/tmp/b.jpg"},
        ],
        "summary": "auto",
        "effort": "high",
        "outputSchema": {"type": "object"},
    }
    bare = turn_start_params(RunSpec(prompt="x"), TID)
    assert "effort" not in bare
    assert "outputSchema" not in bare


def test_ids_are_read_from_results_and_missing_ones_are_none() -> None:
    assert thread_id_of({"thread": {"id": TID}}) == TID
    assert turn_id_of({"turn": {"id": TURN, "status": "inProgress"}}) == TURN
    for bad in ({}, {"thread": None}, {"thread": {"id": 7}}, {"thread": {"id": ""}}):
        assert thread_id_of(bad) is None
    assert turn_id_of({"turn": []}) is None


@pytest.mark.parametrize(
    ("method", "result"),
    [
        ("item/commandExecution/requestApproval", {"decision": "decline"}),
        ("item/fileChange/requestApproval", {"decision": "decline"}),
        ("execCommandApproval", {"decision": "denied"}),
        ("applyPatchApproval", {"decision": "denied"}),
        ("mcpServer/elicitation/request", {"action": "decline"}),
    ],
)
def test_every_approval_is_declined(method: str, result: dict[str, str]) -> None:
    assert server_request_reply(method).result == result


@pytest.mark.parametrize(
    "method", ["item/tool/call", "item/tool/requestUserInput", "account/chatgptAuthTokens/refresh"]
)
def test_other_server_requests_are_refused_as_unknown_methods(method: str) -> None:
    reply = server_request_reply(method)
    assert reply.result is None
    assert reply.error_code == METHOD_NOT_FOUND == -32601
    assert method in reply.error_message


def test_only_an_unloadable_config_is_fatal() -> None:
    fatal = fatal_config_warning(
        "configWarning",
        {"summary": "Invalid configuration; using defaults.", "details": "config.toml:1:9: bad"},
    )
    assert fatal is not None
    assert "config.toml:1:9: bad" in fatal
    assert "before the prompt was sent" in fatal
    assert (
        fatal_config_warning("configWarning", {"summary": "Codex could not find bubblewrap"})
        is None
    )
    assert fatal_config_warning("warning", {"summary": "Invalid configuration"}) is None


def test_item_types_get_exec_names() -> None:
    assert item_type_name("commandExecution") == "command_execution"
    assert item_type_name("mcpToolCall") == "mcp_tool_call"
    assert item_type_name("webSearch") == "web_search"
    assert item_type_name("error") == "error"


# --------------------------------------------------------------------------- a turn's events


def delta(text: str, item: str = "msg_1", turn: str = TURN) -> tuple[str, dict[str, Any]]:
    return "item/agentMessage/delta", {
        "threadId": TID,
        "turnId": turn,
        "itemId": item,
        "delta": text,
    }


def completed_item(item: dict[str, Any], turn: str = TURN) -> tuple[str, dict[str, Any]]:
    return "item/completed", {"threadId": TID, "turnId": turn, "item": item}


def token_usage(
    last: tuple[int, int, int, int], total: tuple[int, int, int, int], turn: str = TURN
) -> tuple[str, dict[str, Any]]:
    def breakdown(c: tuple[int, int, int, int]) -> dict[str, int]:
        return {
            "totalTokens": c[0] + c[2],
            "inputTokens": c[0],
            "cachedInputTokens": c[1],
            "cacheWriteInputTokens": 0,
            "outputTokens": c[2],
            "reasoningOutputTokens": c[3],
        }

    return "thread/tokenUsage/updated", {
        "threadId": TID,
        "turnId": turn,
        "tokenUsage": {"total": breakdown(total), "last": breakdown(last), "modelContextWindow": 1},
    }


def turn_completed(
    status: str = "completed", error: str | None = None
) -> tuple[str, dict[str, Any]]:
    return "turn/completed", {
        "threadId": TID,
        "turn": {
            "id": TURN,
            "items": [],
            "status": status,
            "error": None if error is None else {"message": error, "codexErrorInfo": "other"},
        },
    }


def fold(mapper: TurnMapper, notes: list[tuple[str, dict[str, Any]]]) -> list[CodexEvent]:
    return [event for method, params in notes for event in mapper.feed(method, params)]


def test_a_streamed_answer_is_one_text_delta_per_notification() -> None:
    """The measured shape of a 3-delta reply (APP_SERVER.md 1.3) folds into the deltas, the
    whole message, and the turn's usage."""
    notes = [
        ("turn/started", {"threadId": TID, "turn": {"id": TURN, "status": "inProgress"}}),
        (
            "item/started",
            {"threadId": TID, "turnId": TURN, "item": {"type": "userMessage", "id": "u1"}},
        ),
        delta("Hello"),
        delta(" from"),
        delta(" fake."),
        completed_item({"type": "agentMessage", "id": "msg_1", "text": "Hello from fake."}),
        token_usage((5273, 0, 7, 0), (5273, 0, 7, 0)),
        turn_completed(),
    ]
    mapper = TurnMapper(TURN)
    events = fold(mapper, notes)
    assert events == [
        TextDelta("msg_1", "Hello"),
        TextDelta("msg_1", " from"),
        TextDelta("msg_1", " fake."),
        MessageCompleted("msg_1", "Hello from fake."),
        TurnCompleted(Usage(input_tokens=5273, output_tokens=7)),
    ]
    assert mapper.done
    transcript = Transcript()
    for event in events:
        transcript.feed(event)
    assert transcript.text == "Hello from fake."
    assert transcript.failure(0) is None


def test_usage_sums_last_over_the_turns_requests_and_ignores_other_turns() -> None:
    """A shell turn makes two upstream requests; a resume first replays the old turn's usage."""
    mapper = TurnMapper(TURN)
    events = fold(
        mapper,
        [
            token_usage((100, 0, 10, 0), (100, 0, 10, 0), turn="turn-before"),
            token_usage((5290, 10, 6, 1), (5390, 10, 16, 1)),
            token_usage((5518, 20, 8, 2), (10908, 30, 24, 3)),
            turn_completed(),
        ],
    )
    assert events == [TurnCompleted(Usage(10808, 30, 14, 3))]


def test_a_resumed_thread_reports_its_running_total_like_exec_resume() -> None:
    mapper = TurnMapper(TURN, cumulative=True)
    events = fold(
        mapper,
        [
            token_usage((100, 0, 10, 0), (100, 0, 10, 0), turn="turn-before"),
            token_usage((50, 0, 5, 0), (150, 0, 15, 0)),
            turn_completed(),
        ],
    )
    assert events == [TurnCompleted(Usage(150, 0, 15, 0))]


def test_a_resumed_turn_without_usage_reports_zero_rather_than_the_old_total() -> None:
    mapper = TurnMapper(TURN, cumulative=True)
    events = fold(
        mapper,
        [token_usage((100, 0, 10, 0), (100, 0, 10, 0), turn="turn-before"), turn_completed()],
    )
    assert events == [TurnCompleted(Usage())]


def test_reasoning_summary_parts_join_with_newlines_and_other_items_keep_exec_names() -> None:
    mapper = TurnMapper(TURN)
    command = {"type": "commandExecution", "id": "call_1", "status": "completed", "exitCode": 0}
    events = fold(
        mapper,
        [
            completed_item({"type": "reasoning", "id": "rs_1", "summary": ["**A**", "b"]}),
            completed_item({"type": "reasoning", "id": "rs_2", "summary": [], "content": []}),
            ("item/started", {"threadId": TID, "turnId": TURN, "item": command}),
            completed_item(command),
            completed_item({"type": "userMessage", "id": "u1", "content": []}),
        ],
    )
    assert events == [
        ReasoningCompleted("rs_1", "**A**\nb"),
        ItemEvent("started", "command_execution", command),
        ItemEvent("completed", "command_execution", command),
    ]


def test_notifications_of_another_turn_are_ignored() -> None:
    mapper = TurnMapper(TURN)
    other = "turn-other"
    events = fold(
        mapper,
        [
            delta("stale", turn=other),
            completed_item({"type": "agentMessage", "id": "m0", "text": "stale"}, turn=other),
            ("error", {"error": {"message": "old"}, "willRetry": False, "turnId": other}),
            ("turn/completed", {"turn": {"id": other, "status": "completed"}}),
        ],
    )
    assert events == []
    assert not mapper.done


def test_a_retry_notice_is_not_a_failure() -> None:
    mapper = TurnMapper(TURN)
    notice = (
        "error",
        {"error": {"message": "Reconnecting... 1/2"}, "willRetry": True, "turnId": TURN},
    )
    events = fold(mapper, [notice, delta("ok"), turn_completed()])
    transcript = Transcript()
    for event in events:
        transcript.feed(event)
    assert events[0] == ErrorEvent("Reconnecting... 1/2")
    assert transcript.failure(0) is None
    assert transcript.text == "ok"


def test_a_failed_turn_keeps_its_partial_text_and_fails_with_codexs_message() -> None:
    message = "stream disconnected before completion: stream closed before response.completed"
    mapper = TurnMapper(TURN)
    events = fold(
        mapper,
        [
            delta("partial "),
            ("error", {"error": {"message": message}, "willRetry": False, "turnId": TURN}),
            turn_completed("failed", message),
            delta("after the end"),
        ],
    )
    assert events == [TextDelta("msg_1", "partial "), ErrorEvent(message), TurnFailed(message)]
    transcript = Transcript()
    for event in events:
        transcript.feed(event)
    failure = transcript.failure(0)
    assert failure is not None
    assert failure.status == 502
    assert transcript.text == "partial "


def test_an_interrupted_turn_fails_even_without_a_message() -> None:
    events = fold(TurnMapper(TURN), [turn_completed("interrupted")])
    assert events == [TurnFailed("Codex interrupted the turn")]


@pytest.mark.parametrize(
    "params",
    [
        {"threadId": TID, "turnId": TURN, "itemId": "m", "delta": ""},
        {"threadId": TID, "turnId": TURN, "itemId": "m"},
        {"threadId": TID, "turnId": TURN, "item": "not an object"},
    ],
)
def test_malformed_notifications_produce_no_events(params: dict[str, Any]) -> None:
    mapper = TurnMapper(TURN)
    assert mapper.feed("item/agentMessage/delta", params) == []
    assert mapper.feed("item/completed", params) == []


# --------------------------------------------------------------------------- JSON-RPC


class Peer:
    """The other end of an ``RpcConnection``: reads what it wrote, feeds it lines."""

    def __init__(self, timeout: float = 30.0) -> None:
        to_peer, self._from_client = trio.testing.memory_stream_one_way_pair()
        self.conn = RpcConnection(to_peer, peer="fake peer", timeout=timeout)
        self._lines_send, self.lines = trio.open_memory_channel[bytes](100)
        self._buffer = b""

    async def say(self, obj: object) -> None:
        await self._lines_send.send(obj if isinstance(obj, bytes) else json.dumps(obj).encode())

    def hang_up(self) -> None:
        self._lines_send.close()

    async def heard(self) -> dict[str, Any]:
        while b"\n" not in self._buffer:
            self._buffer += await self._from_client.receive_some()
        line, self._buffer = self._buffer.split(b"\n", 1)
        message: dict[str, Any] = json.loads(line)
        return message


async def test_a_server_request_reusing_our_id_is_not_taken_for_the_answer() -> None:
    """The server numbers its requests from 0 like we do: ``method`` tells them apart."""
    peer = Peer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.conn.serve, peer.lines)
        with trio.fail_after(5):
            pending = await peer.conn.send_request("initialize", {"x": 1})
            assert await peer.heard() == {"id": 0, "method": "initialize", "params": {"x": 1}}
            await peer.say({"id": 0, "method": "item/tool/call", "params": {"tool": "t"}})
            request = await peer.conn.incoming.receive()
            assert request == ServerRequest(0, "item/tool/call", {"tool": "t"})
            assert not pending.answered.is_set()
            await peer.say({"method": "configWarning", "params": {"summary": "s"}})
            await peer.say({"id": 0, "result": {"userAgent": "u"}})
            assert await peer.conn.wait(pending) == {"userAgent": "u"}
            assert await peer.conn.incoming.receive() == Notification(
                "configWarning", {"summary": "s"}
            )
            await peer.conn.respond_error(0, METHOD_NOT_FOUND, "no")
            assert await peer.heard() == {"id": 0, "error": {"code": -32601, "message": "no"}}
        peer.hang_up()


async def test_an_error_answer_raises_rpc_error_with_the_peers_message() -> None:
    peer = Peer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.conn.serve, peer.lines)
        with trio.fail_after(5):
            pending = await peer.conn.send_request("thread/resume", {"threadId": TID})
            await peer.say(
                {
                    "id": 0,
                    "error": {
                        "code": -32600,
                        "message": f"thread {TID} already has an active writer",
                    },
                }
            )
            with pytest.raises(RpcError) as caught:
                await peer.conn.wait(pending)
        assert caught.value.method == "thread/resume"
        assert caught.value.code == -32600
        assert "already has an active writer" in caught.value.message
        peer.hang_up()


@pytest.mark.parametrize(
    ("line", "why"),
    [
        (b"not json", "is not JSON"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"result": {}}', "neither a request, a notification nor an answer"),
        (b'{"id": true, "result": {}}', "neither a request, a notification nor an answer"),
        (b'{"method": 7}', "invalid method or id"),
    ],
)
async def test_a_malformed_line_breaks_the_connection(line: bytes, why: str) -> None:
    """The waiting request fails at once with a message naming the problem; ``incoming`` ends."""
    peer = Peer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.conn.serve, peer.lines)
        with trio.fail_after(5):
            pending = await peer.conn.send_request("initialize")
            await peer.say(line)
            with pytest.raises(ProtocolError, match=why):
                await peer.conn.wait(pending)
            with pytest.raises(trio.EndOfChannel):
                await peer.conn.incoming.receive()
    assert peer.conn.error is not None
    assert peer.conn.closed
    with pytest.raises(ProtocolError):
        await peer.conn.send_request("turn/start")


async def test_the_end_of_output_fails_the_waiting_request(autojump_clock: MockClock) -> None:
    peer = Peer()
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.conn.serve, peer.lines)
        pending = await peer.conn.send_request("initialize")
        peer.hang_up()
        with pytest.raises(ProtocolError, match="closed its output before answering initialize"):
            await peer.conn.wait(pending)
        assert peer.conn.error is None  # a clean end, not a broken line
        late = await peer.conn.send_request("thread/start")
        with pytest.raises(ProtocolError, match="before answering thread/start"):
            await peer.conn.wait(late)


async def test_an_unanswered_request_fails_after_the_timeout(autojump_clock: MockClock) -> None:
    peer = Peer(timeout=30.0)
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.conn.serve, peer.lines)
        pending = await peer.conn.send_request("initialize")
        began = trio.current_time()
        with pytest.raises(ProtocolError, match="did not answer initialize within 30 s"):
            await peer.conn.wait(pending)
        assert trio.current_time() - began == pytest.approx(30.0)
        # A late answer is dropped, not delivered anywhere.
        await peer.say({"id": 0, "result": {}})
        peer.hang_up()
    assert peer.conn.error is None


async def test_a_peer_that_stops_reading_fails_the_write(autojump_clock: MockClock) -> None:
    """A full pipe does not block for ever; a closed one is a ProtocolError, not a stream error."""
    send, receive = trio.testing.lockstep_stream_pair()  # every write waits for a reader
    conn = RpcConnection(send, peer="deaf peer", timeout=5.0)
    with pytest.raises(ProtocolError, match="did not read its input within 5 s"):
        await conn.notify("initialized")
    await receive.aclose()
    with pytest.raises(ProtocolError, match="stopped reading its input"):
        await conn.notify("initialized")


async def test_incoming_applies_back_pressure(autojump_clock: MockClock) -> None:
    """While nobody drains ``incoming``, the reader stops taking lines."""
    peer = Peer()
    sent = 0
    async with trio.open_nursery() as nursery:
        nursery.start_soon(peer.conn.serve, peer.lines)
        for n in range(400):
            with trio.move_on_after(1):
                await peer.say({"method": "warning", "params": {"n": n}})
                sent += 1
                continue
            break
        # 256 buffered in incoming, 100 in the line channel, one held by the reader.
        assert sent == 256 + 100 + 1
        received = [await peer.conn.incoming.receive() for _ in range(sent)]
        assert [m.params["n"] for m in received if isinstance(m, Notification)] == list(range(sent))
        peer.hang_up()
