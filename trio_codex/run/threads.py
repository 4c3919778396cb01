"""Continuing a conversation: resume its thread or branch it, and one writer per thread.

``plan_continuation`` decides how a ``previous_response_id`` is continued. Continuing the
thread's latest turn resumes the thread (Codex's ``thread/resume`` / ``codex exec resume``:
the same thread, so the upstream prompt cache carries over); continuing an older turn branches
(``thread/fork`` at that turn into a new thread, whose history ends with that turn). The
latest turn is what Codex's rollout file records last (``codex.rollout.read_thread_record``),
so replicas sharing ``CODEX_HOME`` agree on it.

Codex refuses a second resume of a thread that is still being written, so the server refuses it
first, in process, with 409 ``conversation_busy``; a fork writes a new thread and needs no
lock on its source. A continuation of the very turn a run of this process is resuming from is
a second writer too (409), even once that run's new turn is in the rollout.

Pure: no trio, no IO. A run's ``RunLease`` is released once, by the run's own exit stack, when
its process is gone (``CodexRunner.start(..., resources=...)``).
"""

from __future__ import annotations

import collections
import dataclasses

from ..errors import ConflictError, InvalidRequestError


@dataclasses.dataclass(frozen=True)
class Continuation:
    """How a request continues a thread."""

    thread_id: str
    #: Branch: fork the thread at this turn. None: resume the thread (its latest turn).
    fork_at: str | None = None


def plan_continuation(
    thread_id: str,
    turn_id: str | None,
    *,
    latest_turn_id: str | None,
    resuming_from: str | None,
) -> Continuation:
    """Resume ``thread_id`` when ``turn_id`` (the previous response's turn) is its latest turn
    or unknown (an id minted without a turn: by ``codex exec``, or before turn ids existed;
    a rollout with no turn recorded), or the turn a run is resuming from right now (the
    resume then meets the writer lock: 409); else fork the thread at ``turn_id``."""
    if turn_id is None or latest_turn_id is None:
        return Continuation(thread_id)
    if turn_id in (latest_turn_id, resuming_from):
        return Continuation(thread_id)
    return Continuation(thread_id, fork_at=turn_id)


def branching_unsupported() -> InvalidRequestError:
    """The 400 for a branch on a backend that cannot fork a thread at a turn (``codex exec
    fork`` forks a whole thread only)."""
    return InvalidRequestError(
        "previous_response_id names an earlier response of its conversation, not the latest "
        "one: continuing it would branch the conversation, which needs CODEX_BACKEND=app-server "
        "(codex exec can only continue a conversation's latest response).",
        param="previous_response_id",
        code="unsupported_value",
    )


def conversation_busy() -> ConflictError:
    """The 409 for a second concurrent continuation of one conversation."""
    return ConflictError(
        "Another request is still continuing this conversation (previous_response_id); "
        "a conversation takes one request at a time. Retry when it has finished.",
        param="previous_response_id",
        code="conversation_busy",
    )


class ThreadLocks:
    """The threads this process is writing: at most one claimed run per thread.

    ``claim`` refuses a busy thread with 409 and remembers the turn the run continues from
    (``resuming_from``); ``hold`` marks a thread busy without checking (a thread that Codex has
    just created, which nobody else can know yet; fake backends may report one id for every
    new thread); ``release`` undoes either.
    """

    def __init__(self) -> None:
        self._busy: collections.Counter[str] = collections.Counter()
        self._from: dict[str, str] = {}

    def busy(self, thread_id: str) -> bool:
        return self._busy[thread_id] > 0

    def resuming_from(self, thread_id: str) -> str | None:
        """The turn that the run resuming ``thread_id`` continues from, if one does."""
        return self._from.get(thread_id)

    def claim(self, thread_id: str, from_turn: str | None = None) -> None:
        if self.busy(thread_id):
            raise conversation_busy()
        self._busy[thread_id] += 1
        if from_turn is not None:
            self._from[thread_id] = from_turn

    def hold(self, thread_id: str) -> None:
        self._busy[thread_id] += 1

    def release(self, thread_id: str) -> None:
        self._busy[thread_id] -= 1
        if self._busy[thread_id] <= 0:
            del self._busy[thread_id]
            self._from.pop(thread_id, None)


class RunLease:
    """The threads one run holds in ``ThreadLocks``; ``release`` is idempotent."""

    def __init__(self, locks: ThreadLocks) -> None:
        self._locks = locks
        self._threads: list[str] = []
        self._released = False

    def claim(self, thread_id: str, from_turn: str | None = None) -> None:
        self._locks.claim(thread_id, from_turn)
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
