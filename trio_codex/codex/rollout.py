"""Codex's own record of a thread: the rollout files under ``CODEX_HOME/sessions``.

``codex exec resume`` reports ``turn.completed.usage`` as the running total of the whole thread,
not of the turn. A request's own usage is that total ``.since`` the thread's total before the
run, which ``read_thread_record`` reads here: the last ``token_count`` record of the thread's
rollout file. It also reads the thread's latest turn: the ``turn_id`` of the last
``task_started`` record (written when a turn begins, by ``codex exec`` and ``app-server``
alike, so a turn still running is the latest), which tells a continuation of the latest turn
from a branch (``run.threads.plan_continuation``). Plain, blocking file reads: call them in a
worker thread.
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime
import json
import os
import re
import uuid
from collections.abc import Generator
from pathlib import Path
from typing import Any, Final

from ..run.events import Usage
from .exec import parse_usage

_CANONICAL_UUID: Final = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")

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


@dataclasses.dataclass(frozen=True)
class ThreadRecord:
    """What a rollout file says about its thread's end."""

    #: Codex's cumulative usage of the thread (None: no ``token_count`` record yet).
    totals: Usage | None = None
    #: The id of the thread's latest turn (None: no turn recorded, or an older Codex).
    last_turn_id: str | None = None


def last_totals(path: Path, limit: int = ROLLOUT_READ_LIMIT) -> Usage | None:
    """The last ``token_count.info.total_token_usage`` of a rollout file, read from the end."""
    return last_record(path, limit).totals


def last_record(path: Path, limit: int = ROLLOUT_READ_LIMIT) -> ThreadRecord:
    """The last totals and the last turn id of a rollout file, read from the end (at most
    ``limit`` bytes of it)."""
    totals: Usage | None = None
    turn_id: str | None = None
    with contextlib.closing(_lines_from_end(path, limit)) as lines:
        for line in lines:
            if totals is None:
                totals = _totals_of(line)
            if turn_id is None:
                turn_id = _turn_started(line)
            if totals is not None and turn_id is not None:
                break
    return ThreadRecord(totals, turn_id)


def _lines_from_end(path: Path, limit: int) -> Generator[bytes]:
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
            yield from reversed(complete)


def _payload(line: bytes, kind: str) -> dict[str, Any] | None:
    """The ``payload`` of a rollout line whose payload ``type`` is ``kind``, else None (a cheap
    byte test first: most lines are not wanted)."""
    if f'"{kind}"'.encode() not in line:
        return None
    try:
        record = json.loads(line)
    except ValueError:
        return None
    payload = record.get("payload") if isinstance(record, dict) else None
    if not isinstance(payload, dict) or payload.get("type") != kind:
        return None
    return payload


def _turn_started(line: bytes) -> str | None:
    payload = _payload(line, "task_started")
    turn_id = payload.get("turn_id") if payload is not None else None
    return turn_id if isinstance(turn_id, str) and turn_id else None


def _totals_of(line: bytes) -> Usage | None:
    if b"total_token_usage" not in line:
        return None
    payload = _payload(line, "token_count")
    info = payload.get("info") if payload is not None else None
    if not isinstance(info, dict) or not isinstance(info.get("total_token_usage"), dict):
        return None
    return parse_usage(info["total_token_usage"])


def read_thread_totals(codex_home: Path, thread_id: str) -> Usage | None:
    """Codex's cumulative usage of a thread as recorded in its rollout, or None when there is
    no readable record (blocking file IO: call it in a worker thread)."""
    record = read_thread_record(codex_home, thread_id)
    return record.totals if record is not None else None


def read_thread_record(codex_home: Path, thread_id: str) -> ThreadRecord | None:
    """The end of a thread's rollout (``last_record``), or None when there is no readable
    rollout (blocking file IO: call it in a worker thread)."""
    try:
        path = find_rollout(codex_home, thread_id)
        return last_record(path) if path is not None else None
    except OSError:
        return None
