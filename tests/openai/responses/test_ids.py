"""Layer 1: ``trio_codex.openai.responses.ids``: response ids (``ResponseIdCodec``) and Codex's
resume refusals mapped to 409 and 404."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from trio_codex.errors import NotFoundError, UpstreamError
from trio_codex.openai.responses.ids import (
    ResponseIdCodec,
    ResponseIdError,
    ResponseRef,
    key_binding,
    resume_error,
)
from trio_codex.run.events import Usage

SECRET = b"s" * 32
THREAD = "01a2143b-1fd9-76e0-9757-41798741afc5"
TURN = "01a239cc-4d22-7cd3-ab13-496bba6e6643"
codec = ResponseIdCodec(SECRET)


# --------------------------------------------------------------------------- response ids


@pytest.mark.parametrize(
    "ref",
    [
        ResponseRef(THREAD),
        ResponseRef(THREAD, Usage(300, 5, 30, 2, 1)),
        ResponseRef("thread-1", Usage(1, 2, 3, 4)),
        ResponseRef(None),
        ResponseRef(THREAD, turn_id=TURN),
        ResponseRef(THREAD, Usage(7, 0, 1), turn_id="turn-7"),
    ],
    ids=["uuid", "uuid+totals", "name+totals", "no thread", "uuid+turn", "totals+named turn"],
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


def test_ids_minted_before_turn_ids_still_decode() -> None:
    """An id minted by the previous release (no turn) decodes, with no turn: it continues
    the conversation's latest turn."""
    old = "resp_AQcAAQIDBAUGBwGiOcxNCnWDnn8sfJrl_VdkAAAKANTVmqWjD6KtJBlcMGwfjEU"
    ref = ResponseIdCodec(b"legacy-secret").decode(old, key_binding("key-a"))
    assert ref == ResponseRef(
        "01a239cc-4d0a-7583-9e7f-2c7c9ae5fd57",
        Usage(input_tokens=100, output_tokens=10),
        bytes(range(8)),
        turn_id=None,
    )


def test_a_turn_keeps_ids_short() -> None:
    """A UUID turn id is packed into 16 bytes too."""
    assert len(codec.encode(ResponseRef(THREAD, turn_id=TURN), key_binding("k"))) <= 90


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


# --------------------------------------------------------------------------- errors


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
