"""Conversations over the Responses API: response ids that find their Codex thread, one writer
per thread, and per-request usage on a resumed thread.

Everything here is pure or plain file reading; nothing imports trio or Quart.

**Response ids** (``ResponseIdCodec``) carry what a later ``previous_response_id`` needs, so
the server keeps no table of responses: the Codex thread id (absent when the response cannot be
continued: ``store: false``, or Codex never reported a thread), the Codex turn that produced the
response (when the backend reports turn ids: ``app-server`` does, ``codex exec`` does not),
optionally Codex's cumulative usage of the thread after this response, and a random nonce, all signed with HMAC-SHA256 under
``Settings.response_id_secret`` together with the caller's API key (``key_binding``). Hence:

* an id minted for one API key does not verify under another key (nor under another secret),
  so one key cannot continue another key's conversation; with auth off every caller shares one
  binding;
* a tampered, truncated or foreign id fails verification; the caller answers all of these
  with the same 404 ``previous_response_not_found``, so an id reveals nothing by its answer.

Layout, base64url without padding after ``resp_``: version (1 byte), flags (1 byte), nonce
(8 bytes), the thread id (16 bytes when it is a canonical UUID, else a length-prefixed UTF-8
string), the five usage counts as LEB128 varints when present, the turn id when present (coded
like the thread id), then the first 16 bytes of the HMAC over
``DOMAIN || binding || 0x00 || everything before the tag``. The turn id is a flag of its own,
so ids minted before turn ids existed still decode (``turn_id`` None: they continue the
conversation's latest turn, see ``run.threads.plan_continuation``).

The totals an id carries are the fallback baseline of per-request usage on a resumed thread
(``Usage.since``), when Codex's own record (``codex/rollout.py``) cannot be read.
"""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import re
import secrets
import uuid
from base64 import urlsafe_b64decode, urlsafe_b64encode
from typing import Final

from ...errors import NotFoundError, ServiceError
from ...run.events import Usage
from ...run.threads import conversation_busy

PREFIX: Final = "resp_"
_VERSION: Final = 1
_DOMAIN: Final = b"trio-codex response id v1\x00"
_TAG_BYTES: Final = 16
_NONCE_BYTES: Final = 8
_HAS_THREAD: Final = 0x01
_HAS_TOTALS: Final = 0x02
_UUID_THREAD: Final = 0x04
_HAS_TURN: Final = 0x08
_UUID_TURN: Final = 0x10
_KNOWN_FLAGS: Final = _HAS_THREAD | _HAS_TOTALS | _UUID_THREAD | _HAS_TURN | _UUID_TURN
#: Longest id ``decode`` looks at (a thread id of Codex is 36 characters; names are short).
MAX_ID_CHARS: Final = 512
_CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


class ResponseIdError(ValueError):
    """The id is malformed, or was not minted by this server for this API key."""


@dataclasses.dataclass(frozen=True)
class ResponseRef:
    """What a response id carries."""

    #: The Codex thread to resume; None when the response cannot be continued.
    thread_id: str | None
    #: Codex's cumulative usage of the thread after this response, when known at minting.
    totals: Usage | None = None
    nonce: bytes = dataclasses.field(default_factory=lambda: secrets.token_bytes(_NONCE_BYTES))
    #: The Codex turn that produced the response (None: unknown, continue the latest turn).
    turn_id: str | None = None


def key_binding(api_key: str | None) -> bytes:
    """What ids are bound to: a digest of the caller's API key, or a constant with auth off."""
    if api_key is None:
        return b"auth-off"
    return b"key:" + hashlib.sha256(api_key.encode()).digest()


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        if value:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, n: int) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise ResponseIdError("truncated")
        chunk = self.data[self.pos : self.pos + n]
        self.pos += n
        return chunk

    def varint(self) -> int:
        value = 0
        for shift in range(0, 70, 7):
            byte = self.take(1)[0]
            value |= (byte & 0x7F) << shift
            if not byte & 0x80:
                return value
        raise ResponseIdError("varint too long")


def _usage_fields(usage: Usage) -> tuple[int, ...]:
    return (
        usage.input_tokens,
        usage.cached_input_tokens,
        usage.cache_write_input_tokens,
        usage.output_tokens,
        usage.reasoning_output_tokens,
    )


class ResponseIdCodec:
    """Mints and verifies response ids under one secret (see the module docstring)."""

    def __init__(self, secret: bytes) -> None:
        if not secret:
            raise ValueError("the response id secret must not be empty")
        self._secret = secret

    def _tag(self, binding: bytes, body: bytes) -> bytes:
        mac = hmac.new(self._secret, _DOMAIN + binding + b"\x00" + body, hashlib.sha256)
        return mac.digest()[:_TAG_BYTES]

    def encode(self, ref: ResponseRef, binding: bytes) -> str:
        """The id for ``ref``, verifiable only with the same secret and ``binding``."""
        if len(ref.nonce) != _NONCE_BYTES:
            raise ValueError(f"the nonce must be {_NONCE_BYTES} bytes")
        flags = 0
        parts: list[bytes] = [ref.nonce]
        if ref.thread_id is not None:
            flags |= _HAS_THREAD
            if _CANONICAL_UUID.fullmatch(ref.thread_id):
                flags |= _UUID_THREAD
            parts.append(_id_bytes(ref.thread_id))
        if ref.totals is not None:
            flags |= _HAS_TOTALS
            parts += [_varint(n) for n in _usage_fields(ref.totals)]
        if ref.turn_id is not None:
            flags |= _HAS_TURN
            if _CANONICAL_UUID.fullmatch(ref.turn_id):
                flags |= _UUID_TURN
            parts.append(_id_bytes(ref.turn_id))
        body = bytes([_VERSION, flags]) + b"".join(parts)
        token = body + self._tag(binding, body)
        return PREFIX + urlsafe_b64encode(token).rstrip(b"=").decode()

    def decode(self, response_id: str, binding: bytes) -> ResponseRef:
        """The ``ResponseRef`` of an id minted by ``encode`` with this secret and ``binding``;
        ``ResponseIdError`` for anything else (checked before any field is trusted)."""
        if not response_id.startswith(PREFIX) or len(response_id) > MAX_ID_CHARS:
            raise ResponseIdError("not a response id of this server")
        text = response_id.removeprefix(PREFIX)
        if not re.fullmatch(r"[A-Za-z0-9_-]+", text):
            raise ResponseIdError("not base64url")
        try:
            token = urlsafe_b64decode(text + "=" * (-len(text) % 4))
        except ValueError:
            raise ResponseIdError("not base64url") from None
        # Only the canonical spelling is an id: unused low bits of the last character would
        # otherwise give several strings for one token.
        if urlsafe_b64encode(token).rstrip(b"=").decode() != text:
            raise ResponseIdError("not canonical base64url")
        if len(token) < 2 + _NONCE_BYTES + _TAG_BYTES:
            raise ResponseIdError("too short")
        body, tag = token[:-_TAG_BYTES], token[-_TAG_BYTES:]
        if not hmac.compare_digest(tag, self._tag(binding, body)):
            raise ResponseIdError("signature mismatch")
        reader = _Reader(body)
        version, flags = reader.take(2)
        if version != _VERSION or flags & ~_KNOWN_FLAGS:
            raise ResponseIdError("unknown version")
        nonce = reader.take(_NONCE_BYTES)
        thread_id = _read_id(reader, flags, _HAS_THREAD, _UUID_THREAD)
        totals: Usage | None = None
        if flags & _HAS_TOTALS:
            i, c, w, o, r = (reader.varint() for _ in range(5))
            totals = Usage(
                input_tokens=i,
                cached_input_tokens=c,
                cache_write_input_tokens=w,
                output_tokens=o,
                reasoning_output_tokens=r,
            )
        turn_id = _read_id(reader, flags, _HAS_TURN, _UUID_TURN)
        if reader.pos != len(body):
            raise ResponseIdError("trailing bytes")
        return ResponseRef(thread_id, totals, nonce, turn_id)


def _id_bytes(value: str) -> bytes:
    """A thread or turn id: 16 bytes for a canonical UUID, else length-prefixed UTF-8."""
    if _CANONICAL_UUID.fullmatch(value):
        return uuid.UUID(value).bytes
    raw = value.encode()
    return _varint(len(raw)) + raw


def _read_id(reader: _Reader, flags: int, present: int, compact: int) -> str | None:
    if not flags & present:
        return None
    if flags & compact:
        return str(uuid.UUID(bytes=reader.take(16)))
    try:
        return reader.take(reader.varint()).decode()
    except UnicodeDecodeError:
        raise ResponseIdError("bad thread or turn id") from None


def previous_not_found(detail: str = "") -> NotFoundError:
    """The 404 for an unknown, malformed, foreign or expired ``previous_response_id``."""
    return NotFoundError(
        detail or _NOT_FOUND,
        param="previous_response_id",
        code="previous_response_not_found",
    )


_NOT_FOUND: Final = (
    "Previous response not found: the id was not issued by this server for this API key."
)


#: Codex's own refusals when resuming a thread (CODEX_FACTS section 6).
_ACTIVE_WRITER: Final = "already has an active writer"
_NO_ROLLOUT: Final = "no rollout found for thread id"


def resume_error(error: ServiceError) -> ServiceError:
    """Map Codex's refusals to resume a thread to 409 (busy) and 404 (gone); else ``error``."""
    if _ACTIVE_WRITER in error.message:
        return conversation_busy()
    if _NO_ROLLOUT in error.message:
        return previous_not_found(
            "Previous response not found: Codex no longer has its conversation "
            "(its CODEX_HOME was changed or cleaned)."
        )
    return error
