"""Conversations over the Responses API: response ids that find their Codex thread, one writer
per thread, and per-request usage on a resumed thread.

Everything here is pure or plain file reading; nothing imports trio or Quart.

**Response ids** (``ResponseIdCodec``) carry what a later ``previous_response_id`` needs, so
the server keeps no table of responses: the Codex thread id (absent when the response cannot be
continued: ``store: false``, or Codex never reported a thread), optionally Codex's cumulative
usage of the thread after this response, and a random nonce, all signed with HMAC-SHA256 under
``Settings.response_id_secret`` together with the caller's API key (``key_binding``). Hence:

* an id minted for one API key does not verify under another key (nor under another secret),
  so one key cannot continue another key's conversation; with auth off every caller shares one
  binding;
* a tampered, truncated or foreign id fails verification; the caller answers all of these
  with the same 404 ``previous_response_not_found``, so an id reveals nothing by its answer.

Layout, base64url without padding after ``resp_``: version (1 byte), flags (1 byte), nonce
(8 bytes), the thread id (16 bytes when it is a canonical UUID, else a length-prefixed UTF-8
string), the five usage counts as LEB128 varints when present, then the first 16 bytes of the
HMAC over ``DOMAIN || binding || 0x00 || everything before the tag``.

**One writer per thread** (``ThreadLocks``): Codex refuses a second ``exec resume`` of a thread
that is still being written; the server refuses it first, in process, with 409.

**Usage**: ``codex exec resume`` reports ``turn.completed.usage`` as the running total of the
whole thread, not of the turn. ``usage_since(total, baseline)`` gives the request's own share;
the baseline is Codex's own record of the thread before the resume (``read_thread_totals``,
the last ``token_count`` of the thread's rollout file in ``CODEX_HOME``), else the totals carried
in the previous response id (present when that id was minted after its run had ended, i.e. for
non-streamed responses), else zero.
"""

from __future__ import annotations

import collections
import dataclasses
import datetime
import hashlib
import hmac
import json
import os
import re
import secrets
import uuid
from base64 import urlsafe_b64decode, urlsafe_b64encode
from pathlib import Path
from typing import Final

from ...codex.exec import parse_usage
from ...errors import ConflictError, NotFoundError, ServiceError
from ...run.events import Usage

PREFIX: Final = "resp_"
_VERSION: Final = 1
_DOMAIN: Final = b"trio-codex response id v1\x00"
_TAG_BYTES: Final = 16
_NONCE_BYTES: Final = 8
_HAS_THREAD: Final = 0x01
_HAS_TOTALS: Final = 0x02
_UUID_THREAD: Final = 0x04
_KNOWN_FLAGS: Final = _HAS_THREAD | _HAS_TOTALS | _UUID_THREAD
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
                parts.append(uuid.UUID(ref.thread_id).bytes)
            else:
                raw = ref.thread_id.encode()
                parts += [_varint(len(raw)), raw]
        if ref.totals is not None:
            flags |= _HAS_TOTALS
            parts += [_varint(n) for n in _usage_fields(ref.totals)]
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
        thread_id: str | None = None
        if flags & _HAS_THREAD:
            if flags & _UUID_THREAD:
                thread_id = str(uuid.UUID(bytes=reader.take(16)))
            else:
                try:
                    thread_id = reader.take(reader.varint()).decode()
                except UnicodeDecodeError:
                    raise ResponseIdError("bad thread id") from None
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
        if reader.pos != len(body):
            raise ResponseIdError("trailing bytes")
        return ResponseRef(thread_id, totals, nonce)


def usage_since(total: Usage, baseline: Usage) -> Usage:
    """The part of a cumulative ``total`` after ``baseline``, each count clamped at 0."""

    def less(a: int, b: int) -> int:
        return max(0, a - b)

    return Usage(
        input_tokens=less(total.input_tokens, baseline.input_tokens),
        cached_input_tokens=less(total.cached_input_tokens, baseline.cached_input_tokens),
        output_tokens=less(total.output_tokens, baseline.output_tokens),
        reasoning_output_tokens=less(
            total.reasoning_output_tokens, baseline.reasoning_output_tokens
        ),
        cache_write_input_tokens=less(
            total.cache_write_input_tokens, baseline.cache_write_input_tokens
        ),
    )


class ThreadLocks:
    """The threads this process is writing: at most one claimed run per thread.

    ``claim`` refuses a busy thread with 409; ``hold`` marks a thread busy without checking
    (a thread that Codex has just created, which nobody else can know yet; fake backends may
    report one id for every new thread); ``release`` undoes either.
    """

    def __init__(self) -> None:
        self._busy: collections.Counter[str] = collections.Counter()

    def busy(self, thread_id: str) -> bool:
        return self._busy[thread_id] > 0

    def claim(self, thread_id: str) -> None:
        if self.busy(thread_id):
            raise conversation_busy()
        self._busy[thread_id] += 1

    def hold(self, thread_id: str) -> None:
        self._busy[thread_id] += 1

    def release(self, thread_id: str) -> None:
        self._busy[thread_id] -= 1
        if self._busy[thread_id] <= 0:
            del self._busy[thread_id]


class RunLease:
    """The threads one run holds in ``ThreadLocks``; ``release`` is idempotent."""

    def __init__(self, locks: ThreadLocks) -> None:
        self._locks = locks
        self._threads: list[str] = []
        self._released = False

    def claim(self, thread_id: str) -> None:
        self._locks.claim(thread_id)
        self._threads.append(thread_id)

    def hold(self, thread_id: str) -> None:
        if self._released:
            return
        self._locks.hold(thread_id)
        self._threads.append(thread_id)

    def release(self) -> None:
        if self._released:
            return
        self._released = True
        for thread_id in self._threads:
            self._locks.release(thread_id)
        self._threads.clear()


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


def conversation_busy() -> ConflictError:
    """The 409 for a second concurrent continuation of one conversation."""
    return ConflictError(
        "Another request is still continuing this conversation (previous_response_id); "
        "a conversation takes one request at a time. Retry when it has finished.",
        param="previous_response_id",
        code="conversation_busy",
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


# --------------------------------------------------------------------------- Codex's record

#: At most this much of a rollout file is read, from the end, looking for the last totals.
ROLLOUT_READ_LIMIT: Final = 64 * 1024 * 1024
_BLOCK: Final = 256 * 1024


def _candidate_day_dirs(sessions: Path, thread_id: str) -> list[Path]:
    """``sessions/YYYY/MM/DD`` directories that may hold the thread: Codex ids are UUIDv7,
    whose first 48 bits are the creation time in ms; Codex names the directory by local date,
    so the UTC day and its neighbours are tried."""
    try:
        value = uuid.UUID(thread_id)
    except ValueError:
        return []
    if value.version != 7:
        return []
    ms = value.int >> 80
    day = datetime.datetime.fromtimestamp(ms / 1000, tz=datetime.UTC).date()
    return [
        sessions / f"{d:%Y}" / f"{d:%m}" / f"{d:%d}"
        for d in (day, day - datetime.timedelta(days=1), day + datetime.timedelta(days=1))
    ]


def may_have_rollout(thread_id: str) -> bool:
    """False when ``thread_id`` cannot name a Codex rollout (Codex thread ids are UUIDs), so
    callers can skip the file lookup."""
    return _CANONICAL_UUID.fullmatch(thread_id) is not None


def find_rollout(codex_home: Path, thread_id: str) -> Path | None:
    """The rollout file of ``thread_id`` under ``codex_home/sessions``, or None."""
    if not may_have_rollout(thread_id):
        return None  # also keeps glob metacharacters out of the pattern below
    sessions = codex_home / "sessions"
    pattern = f"rollout-*-{thread_id}.jsonl"
    for directory in _candidate_day_dirs(sessions, thread_id):
        found = sorted(directory.glob(pattern)) if directory.is_dir() else []
        if found:
            return found[0]
    found = sorted(sessions.glob(f"*/*/*/{pattern}")) if sessions.is_dir() else []
    return found[0] if found else None


def last_totals(path: Path, limit: int = ROLLOUT_READ_LIMIT) -> Usage | None:
    """The last ``token_count.info.total_token_usage`` of a rollout file, read from the end."""
    with path.open("rb") as f:
        end = f.seek(0, os.SEEK_END)
        pos = end
        tail = b""
        while pos > 0 and end - pos < limit:
            size = min(_BLOCK, pos)
            pos -= size
            f.seek(pos)
            tail = f.read(size) + tail
            lines = tail.split(b"\n")
            # The first piece may be a partial line unless the file start was reached.
            complete, tail = (lines, b"") if pos == 0 else (lines[1:], lines[0])
            for line in reversed(complete):
                totals = _totals_of(line)
                if totals is not None:
                    return totals
    return None


def _totals_of(line: bytes) -> Usage | None:
    if b'"token_count"' not in line or b"total_token_usage" not in line:
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    payload = record.get("payload") if isinstance(record, dict) else None
    if not isinstance(payload, dict) or payload.get("type") != "token_count":
        return None
    info = payload.get("info")
    if not isinstance(info, dict) or not isinstance(info.get("total_token_usage"), dict):
        return None
    return parse_usage(info["total_token_usage"])


def read_thread_totals(codex_home: Path, thread_id: str) -> Usage | None:
    """Codex's cumulative usage of a thread as recorded in its rollout, or None when there is
    no readable record (blocking file IO: call it in a worker thread)."""
    try:
        path = find_rollout(codex_home, thread_id)
        return last_totals(path) if path is not None else None
    except OSError:
        return None
