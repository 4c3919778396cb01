"""One writer per conversation thread: Codex refuses a second resume of a thread that is still
being written, so the server refuses it first, in process, with 409 ``conversation_busy``.

Pure: no trio, no IO. A run's ``RunLease`` is released once, by the run's own exit stack, when
its process is gone (``CodexRunner.start(..., resources=...)``).
"""

from __future__ import annotations

import collections

from ..errors import ConflictError


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
