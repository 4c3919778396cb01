"""Layer 1: ``trio_codex.run.threads``: one run at a time per Codex thread."""

from __future__ import annotations

import pytest

from trio_codex.errors import ConflictError
from trio_codex.run.threads import RunLease, ThreadLocks


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
