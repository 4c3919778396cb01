"""Layer 1 for the Responses API: the pure parts, tested with plain function calls.

Response ids (``conversation.ResponseIdCodec``), thread locks, per-request usage, Codex's
rollout record, the event builder and sequencer (``responses_wire``) and the request
translation (``responses_request``).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_codex.codex.rollout import find_rollout, last_totals, read_thread_totals
from trio_codex.errors import ConflictError, InvalidRequestError, NotFoundError, UpstreamError
from trio_codex.openai.responses.ids import (
    ResponseIdCodec,
    ResponseIdError,
    ResponseRef,
    key_binding,
    resume_error,
)
from trio_codex.openai.responses.request import (
    echo_fields,
    input_turns,
    parse_responses_request,
    plan_run,
)
from trio_codex.openai.responses.wire import (
    ResponseBuilder,
    ResponseStream,
    failure_code,
    responses_usage,
)
from trio_codex.run.events import (
    ErrorEvent,
    MessageCompleted,
    ReasoningCompleted,
    TextDelta,
    ThreadStarted,
    TurnCompleted,
    Usage,
)
from trio_codex.run.threads import RunLease, ThreadLocks

SECRET = b"s" * 32
THREAD = "01a2143b-1fd9-76e0-9757-41798741afc5"
codec = ResponseIdCodec(SECRET)


# --------------------------------------------------------------------------- response ids


@pytest.mark.parametrize(
    "ref",
    [
        ResponseRef(THREAD),
        ResponseRef(THREAD, Usage(300, 5, 30, 2, 1)),
        ResponseRef("thread-1", Usage(1, 2, 3, 4)),
        ResponseRef(None),
    ],
    ids=["uuid", "uuid+totals", "name+totals", "no thread"],
)
def test_response_id_round_trips(ref: ResponseRef) -> None:
    """decode(encode(ref)) gives ref back under the same key binding."""
    binding = key_binding("sk-a")
    rid = codec.encode(ref, binding)
    assert rid.startswith("resp_")
    assert rid.removeprefix("resp_").replace("-", "").replace("_", "").isalnum()
    assert codec.decode(rid, binding) == ref


def test_uuid_threads_make_short_ids() -> None:
    """A Codex (UUID) thread id is packed into 16 bytes: ids stay short even with huge totals."""
    assert len(codec.encode(ResponseRef(THREAD), key_binding("k"))) <= 64
    rid = codec.encode(ResponseRef(THREAD, Usage(10**9, 10**9, 10**9, 10**9)), key_binding("k"))
    assert len(rid) < 100


def test_response_id_is_bound_to_key_and_secret() -> None:
    """Another key, auth off, or another secret cannot decode an id."""
    rid = codec.encode(ResponseRef(THREAD), key_binding("sk-a"))
    for binding in (key_binding("sk-b"), key_binding(None)):
        with pytest.raises(ResponseIdError):
            codec.decode(rid, binding)
    with pytest.raises(ResponseIdError):
        ResponseIdCodec(b"t" * 32).decode(rid, key_binding("sk-a"))
    open_id = codec.encode(ResponseRef(THREAD), key_binding(None))
    assert codec.decode(open_id, key_binding(None)).thread_id == THREAD


def test_every_tampered_id_is_refused() -> None:
    """Changing any character of an id, or cutting it short, makes it invalid."""
    binding = key_binding("k")
    rid = codec.encode(ResponseRef(THREAD, Usage(1, 2, 3, 4)), binding)
    for i in range(len("resp_"), len(rid)):
        swapped = "A" if rid[i] != "A" else "B"
        tampered = rid[:i] + swapped + rid[i + 1 :]
        with pytest.raises(ResponseIdError):
            codec.decode(tampered, binding)
    for cut in range(len(rid) - 1, len("resp_"), -7):
        with pytest.raises(ResponseIdError):
            codec.decode(rid[:cut], binding)


@pytest.mark.parametrize(
    "rid", ["", "resp_", "msg_abc", "resp_!!!", "resp_" + "A" * 600, "resp_QUJD", "resp_a=b"]
)
def test_malformed_ids_are_refused(rid: str) -> None:
    """Anything that is not one of our ids raises ResponseIdError, never another exception."""
    with pytest.raises(ResponseIdError):
        codec.decode(rid, key_binding(None))


@given(st.text(min_size=1, max_size=60), st.binary(min_size=8, max_size=8))
def test_any_thread_name_round_trips(thread: str, nonce: bytes) -> None:
    """Thread ids that are not UUIDs (names, odd text) survive the id unchanged."""
    ref = ResponseRef(thread, None, nonce)
    assert codec.decode(codec.encode(ref, b"x"), b"x") == ref


def test_ids_of_one_thread_differ() -> None:
    """Two responses of the same thread get different ids (a random nonce)."""
    a = codec.encode(ResponseRef(THREAD), b"x")
    b = codec.encode(ResponseRef(THREAD), b"x")
    assert a != b


def test_usage_since_subtracts_and_clamps() -> None:
    """Per-request usage is total minus baseline per count, never below zero."""
    assert Usage(300, 5, 30, 2, 7).since(Usage(100, 5, 10, 0, 3)) == Usage(200, 0, 20, 2, 4)
    assert Usage(5, 0, 1, 0).since(Usage(10, 3, 2, 1)) == Usage(0, 0, 0, 0)


# --------------------------------------------------------------------------- locks and errors


def test_thread_locks_allow_one_claim_per_thread() -> None:
    """A claimed thread refuses a second claim with 409 until released; hold never refuses."""
    locks = ThreadLocks()
    first = RunLease(locks)
    first.claim("t")
    second = RunLease(locks)
    with pytest.raises(ConflictError) as busy:
        second.claim("t")
    assert busy.value.status_code == 409
    assert busy.value.code == "conversation_busy"
    assert busy.value.param == "previous_response_id"
    second.claim("u")
    first.release()
    first.release()  # idempotent: does not free someone else's claim
    assert not locks.busy("t")
    assert locks.busy("u")
    third = RunLease(locks)
    third.hold("u")
    third.release()
    assert locks.busy("u")
    second.release()
    assert not locks.busy("u")


def test_a_released_lease_holds_nothing_more() -> None:
    """hold() after release() (a thread minted after the run ended) leaves nothing busy."""
    locks = ThreadLocks()
    lease = RunLease(locks)
    lease.release()
    lease.hold("t")
    assert not locks.busy("t")


def test_codex_resume_refusals_map_to_409_and_404() -> None:
    """'already has an active writer' is 409; 'no rollout found' is 404; others unchanged."""
    writer = UpstreamError(
        "Error: thread/resume: thread/resume failed: thread x already has an active writer"
    )
    gone = UpstreamError("thread/resume failed: no rollout found for thread id x (code -32600)")
    other = UpstreamError("boom")
    assert resume_error(writer).status_code == 409
    mapped = resume_error(gone)
    assert isinstance(mapped, NotFoundError)
    assert mapped.code == "previous_response_not_found"
    assert resume_error(other) is other


# --------------------------------------------------------------------------- Codex's record


def _token_count(total: int) -> str:
    usage = {
        "input_tokens": total,
        "cached_input_tokens": 5,
        "cache_write_input_tokens": 0,
        "output_tokens": total // 10,
        "reasoning_output_tokens": 1,
    }
    return json.dumps(
        {
            "type": "event_msg",
            "payload": {"type": "token_count", "info": {"total_token_usage": usage}},
        }
    )


def _rollout(home: Path, thread: str, lines: list[str], day: str = "2026/11/25") -> Path:
    directory = home / "sessions" / day
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"rollout-2026-11-25T19-42-28-{thread}.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_rollout_totals_are_the_last_token_count(tmp_path: Path) -> None:
    """The last token_count with totals wins; info: null records and other lines are skipped."""
    null_info = json.dumps({"type": "event_msg", "payload": {"type": "token_count", "info": None}})
    _rollout(
        tmp_path,
        THREAD,
        ['{"type":"session_meta"}', _token_count(100), "not json", _token_count(300), null_info],
    )
    assert read_thread_totals(tmp_path, THREAD) == Usage(300, 5, 30, 1)


def test_rollout_is_found_outside_its_uuid_day_and_read_across_blocks(tmp_path: Path) -> None:
    """A rollout in another day directory is still found; a huge tail is read backwards."""
    padding = json.dumps({"type": "response_item", "text": "x" * 300_000})
    path = _rollout(tmp_path, THREAD, [_token_count(42), padding, padding], day="2020/01/01")
    assert find_rollout(tmp_path, THREAD) == path
    assert last_totals(path) == Usage(42, 5, 4, 1)
    assert last_totals(path, limit=1024) is None  # the read limit holds


def test_rollout_lookup_refuses_odd_ids_and_missing_files(tmp_path: Path) -> None:
    """Non-UUID thread ids (glob patterns included) and missing records give None."""
    _rollout(tmp_path, THREAD, [_token_count(1)])
    assert read_thread_totals(tmp_path, "*") is None
    assert read_thread_totals(tmp_path, "thread-1") is None
    assert read_thread_totals(tmp_path, str(uuid.uuid4())) is None
    assert read_thread_totals(tmp_path / "nowhere", THREAD) is None


# --------------------------------------------------------------------------- the builder


def _builder(final_only: bool = False) -> ResponseBuilder:
    counter = iter(range(100))
    return ResponseBuilder(
        {"model": "m"},
        created_at=1,
        final_only=final_only,
        clock=lambda: 2,
        item_id=lambda prefix: f"{prefix}_{next(counter)}",
    )


def _types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"].removeprefix("response.") for e in events]


def test_builder_maps_deltas_to_the_open_message() -> None:
    """TextDelta opens one message (added, part added) and streams into it; completion closes it."""
    b = _builder()
    events = b.start("resp_x")
    events += b.feed(TextDelta("item_1", "Hel"))
    events += b.feed(TextDelta("item_1", "lo"))
    events += b.feed(MessageCompleted("item_1", "Hello!"))
    events += b.complete(responses_usage(Usage(1, 0, 2, 0)))
    assert _types(events) == [
        "created",
        "in_progress",
        "output_item.added",
        "content_part.added",
        "output_text.delta",
        "output_text.delta",
        "output_text.delta",
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "completed",
    ]
    assert [e["delta"] for e in events if e["type"].endswith("text.delta")] == ["Hel", "lo", "!"]
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    assert {e["item_id"] for e in events if "item_id" in e} == {"msg_0"}
    final = events[-1]["response"]
    assert final["output"][0]["content"][0]["text"] == "Hello!"
    assert final["usage"]["output_tokens"] == 2
    assert final["completed_at"] == 2


def test_builder_orders_reasoning_and_messages_densely() -> None:
    """Reasoning then two messages get output_index 0, 1, 2; the snapshot lists them in order."""
    b = _builder()
    b.start("r")
    events = b.feed(ReasoningCompleted("item_0", "**Plan**"))
    events += b.feed(MessageCompleted("item_1", "a"))
    events += b.feed(ErrorEvent("Reconnecting... 1/5"))
    events += b.feed(MessageCompleted("item_2", "b"))
    added = [e for e in events if e["type"] == "response.output_item.added"]
    assert [(e["output_index"], e["item"]["type"]) for e in added] == [
        (0, "reasoning"),
        (1, "message"),
        (2, "message"),
    ]
    assert _types(events[:6]) == [
        "output_item.added",
        "reasoning_summary_part.added",
        "reasoning_summary_text.delta",
        "reasoning_summary_text.done",
        "reasoning_summary_part.done",
        "output_item.done",
    ]
    snapshot = b.snapshot()
    assert snapshot["output"][0] == {
        "id": "rs_0",
        "type": "reasoning",
        "summary": [{"type": "summary_text", "text": "**Plan**"}],
    }
    assert [i["content"][0]["text"] for i in snapshot["output"][1:]] == ["a", "b"]


def test_builder_final_only_emits_the_last_message_at_completion() -> None:
    """With structured output, no message event is sent until completion, then only the last."""
    b = _builder(final_only=True)
    b.start("r")
    assert b.feed(MessageCompleted("item_1", "thinking out loud")) == []
    assert b.feed(TextDelta("item_2", '{"a"')) == []
    assert b.feed(MessageCompleted("item_2", '{"a": 1}')) == []
    events = b.complete(None)
    texts = [e["text"] for e in events if e["type"] == "response.output_text.done"]
    assert texts == ['{"a": 1}']
    assert len(events[-1]["response"]["output"]) == 1
    assert "usage" not in events[-1]["response"]


def test_builder_fail_closes_open_items_and_uses_spec_codes() -> None:
    """A failure closes open messages as incomplete and ends with response.failed."""
    b = _builder()
    b.start("r")
    b.feed(TextDelta("item_1", "par"))
    events = b.fail("timeout", "Codex did not finish")
    assert _types(events) == [
        "output_text.done",
        "content_part.done",
        "output_item.done",
        "failed",
    ]
    assert events[2]["item"]["status"] == "incomplete"
    failed = events[-1]["response"]
    assert failed["status"] == "failed"
    assert failed["error"] == {"code": "server_error", "message": "Codex did not finish"}
    assert failed["output"][0]["content"][0]["text"] == "par"


@pytest.mark.parametrize(
    ("ours", "spec"),
    [
        ("rate_limit_exceeded", "rate_limit_exceeded"),
        ("insufficient_quota", "rate_limit_exceeded"),
        ("context_length_exceeded", "invalid_prompt"),
        ("invalid_image", "invalid_image"),
        ("timeout", "server_error"),
        (None, "server_error"),
    ],
)
def test_failure_codes_are_spec_codes(ours: str | None, spec: str) -> None:
    """response.failed codes come from the spec's ResponseErrorCode enum."""
    assert failure_code(ours) == spec


def test_stream_waits_for_the_thread_before_created() -> None:
    """A new conversation's created event waits for ThreadStarted, whose id it carries."""
    minted: list[str | None] = []

    def mint(thread: str | None) -> str:
        minted.append(thread)
        return f"resp_{thread}"

    stream = ResponseStream(_builder(), mint, thread_id=None, await_thread=True)
    assert stream.open() == []
    events = stream.feed(ThreadStarted("t-9"))
    assert _types(events) == ["created", "in_progress"]
    assert events[0]["response"]["id"] == "resp_t-9"
    assert stream.feed(ThreadStarted("t-9")) == []
    assert _types(stream.complete(None)) == ["completed"]
    assert minted == ["t-9"]


def test_stream_without_a_thread_mints_an_id_that_cannot_continue() -> None:
    """If Codex reports no thread before other output (or ends), the id carries no thread."""
    stream = ResponseStream(_builder(), lambda t: f"resp_{t}", thread_id=None, await_thread=True)
    events = stream.feed(TurnCompleted(Usage()))
    assert events[0]["response"]["id"] == "resp_None"
    quiet = ResponseStream(_builder(), lambda t: f"resp_{t}", thread_id=None, await_thread=True)
    assert _types(quiet.fail("x", "y")) == ["created", "in_progress", "failed"]


def test_continuation_stream_is_created_at_once() -> None:
    """A continuation knows its thread: created and in_progress come before any Codex event."""
    stream = ResponseStream(_builder(), lambda t: f"resp_{t}", thread_id="t", await_thread=False)
    events = stream.open()
    assert _types(events) == ["created", "in_progress"]
    assert events[1]["response"]["id"] == "resp_t"


# --------------------------------------------------------------------------- requests


def _req(**fields: Any) -> Any:
    return parse_responses_request({"model": "m", "input": "hi", **fields})


def test_a_lone_string_input_is_the_prompt() -> None:
    """input as a string, without instructions, reaches Codex unchanged."""
    plan = plan_run(_req(input="What is 2+2?"))
    assert plan.prompt.text == "What is 2+2?"
    assert plan.output.schema is None
    assert not plan.output.final_only


def test_messages_and_instructions_keep_roles_and_order() -> None:
    """instructions become a developer turn first; message parts are joined; reasoning skipped."""
    turns, images = input_turns(
        [
            {"role": "system", "content": "sys"},
            {"type": "reasoning", "id": "rs_1", "summary": []},
            {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "q"}]},
            {
                "role": "assistant",
                "content": [{"type": "output_text", "text": "a", "annotations": []}],
            },
            {
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "look"},
                    {"type": "input_image", "image_url": "data:image/png;base64,AAAA"},
                ],
            },
        ],
        "be brief",
    )
    assert [(t.role, t.text) for t in turns] == [
        ("developer", "be brief"),
        ("system", "sys"),
        ("user", "q"),
        ("assistant", "a"),
        ("user", "look\n[image 1]"),
    ]
    assert [i.param for i in images] == ["input[4].content[1].image_url"]


@pytest.mark.parametrize(
    ("items", "param"),
    [
        ([{"type": "function_call_output", "call_id": "call_1", "output": "x"}], "input[0]"),
        (
            [
                {"role": "user", "content": "a"},
                {"role": "user", "content": "b"},
                {"role": "assistant", "content": "c"},
                {"type": "function_call_output", "call_id": "c", "output": "x"},
            ],
            "input[3]",
        ),
        ([{"type": "item_reference", "id": "msg_1"}], "input[0]"),
        ([{"type": "function_call", "name": "f", "arguments": "{}"}], "input[0]"),
        (["text"], "input[0]"),
        ([{"role": "tool", "content": "x"}], "input[0].role"),
        ([{"role": "user"}], "input[0].content"),
        ([{"role": "user", "content": [{"type": "input_file", "file_id": "f"}]}], None),
        ([{"role": "user", "content": [{"type": "input_text"}]}], "input[0].content[0].text"),
        (
            [{"role": "user", "content": [{"type": "input_image", "file_id": "file-1"}]}],
            "input[0].content[0].file_id",
        ),
        ([{"type": "reasoning", "summary": []}], "input"),
        ([], "input"),
    ],
)
def test_items_the_server_cannot_honour_are_400_naming_them(
    items: list[Any], param: str | None
) -> None:
    """Tool outputs, unknown items, bad roles and parts are refused naming the item or part."""
    with pytest.raises(InvalidRequestError) as bad:
        input_turns(items)
    assert bad.value.status_code == 400
    expected = param or "input[0].content[0].type"
    assert bad.value.param == expected
    assert expected.removesuffix(".type") in bad.value.message


@pytest.mark.parametrize(
    ("fields", "param"),
    [
        ({"model": 3}, "model"),
        ({"input": None}, "input"),
        ({"stream": "yes"}, "stream"),
        ({"temperature": 3}, "temperature"),
        ({"temperature": "1"}, "temperature"),
        ({"top_p": -0.1}, "top_p"),
        ({"max_output_tokens": 0}, "max_output_tokens"),
        ({"metadata": {"k": 1}}, "metadata.k"),
        ({"metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        ({"reasoning": {"effort": "huge"}}, "reasoning.effort"),
        ({"truncation": "sometimes"}, "truncation"),
        ({"x_codex": {"sandbx": "read-only"}}, "x_codex.sandbx"),
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"previous_response_id": 5}, "previous_response_id"),
    ],
)
def test_bad_fields_are_400_naming_the_field(fields: dict[str, Any], param: str) -> None:
    """Wrong types, ranges and unsupported features name the field in a 400."""
    with pytest.raises(InvalidRequestError) as bad:
        _req(**fields)
    assert bad.value.status_code == 400
    assert bad.value.param == param


@pytest.mark.parametrize(
    ("fmt", "param"),
    [
        ({"type": "json_schema", "name": "x"}, "text.format.schema"),
        ({"type": "json_schema", "schema": {"type": "nonsense"}}, "text.format.schema"),
        ({"type": "json_schema", "schema": {}, "name": 5}, "text.format.name"),
        ({"type": "yaml"}, "text.format.type"),
    ],
)
def test_bad_text_formats_are_400(fmt: dict[str, Any], param: str) -> None:
    """An invalid JSON Schema or format type is refused before Codex runs."""
    with pytest.raises(InvalidRequestError) as bad:
        plan_run(_req(text={"format": fmt}))
    assert bad.value.param == param


def test_text_formats_set_schema_and_answer_mode() -> None:
    """json_schema passes the schema to --output-schema; json_object asks for JSON in the prompt."""
    schema = {"type": "object", "properties": {"a": {"type": "integer"}}, "required": ["a"]}
    plan = plan_run(_req(text={"format": {"type": "json_schema", "name": "A", "schema": schema}}))
    assert plan.output.schema == schema
    assert plan.output.final_only
    obj = plan_run(_req(text={"format": {"type": "json_object"}}))
    assert obj.output.schema is None
    assert obj.output.final_only
    assert "JSON object" in obj.prompt.text
    assert not plan_run(_req(text={"format": {"type": "text"}})).output.final_only


def test_echo_fields_repeat_the_request_with_spec_defaults() -> None:
    """Echoed fields repeat what was sent; absent ones get the spec's defaults."""
    defaults = echo_fields(_req(), None)
    assert defaults["tools"] == []
    assert defaults["tool_choice"] == "auto"
    assert defaults["parallel_tool_calls"] is True
    assert defaults["metadata"] == {}
    assert (defaults["temperature"], defaults["top_p"]) == (1.0, 1.0)
    assert defaults["text"] == {"format": {"type": "text"}}
    assert defaults["store"] is True
    given_fields = echo_fields(
        _req(
            instructions="i",
            temperature=0.2,
            metadata={"a": "b"},
            store=False,
            user="u",
            tool_choice="none",
            reasoning={"effort": "low", "summary": "auto"},
        ),
        "low",
    )
    assert given_fields["instructions"] == "i"
    assert given_fields["temperature"] == 0.2
    assert given_fields["metadata"] == {"a": "b"}
    assert given_fields["store"] is False
    assert given_fields["user"] == "u"
    assert given_fields["tool_choice"] == "none"
    assert given_fields["reasoning"] == {"effort": "low", "summary": "auto"}
