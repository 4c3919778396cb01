"""Layer 1: ``trio_codex.run.threads``: one run at a time per Codex thread."""

from __future__ import annotations

import pytest

from trio_codex.errors import ConflictError
from trio_codex.run.threads import (
    Continuation,
    RunLease,
    ThreadLocks,
    branching_unsupported,
    plan_continuation,
)


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


def test_the_latest_or_an_unknown_turn_resumes_and_an_older_one_forks() -> None:
    """Resume the thread for its latest turn, a turn-less id, an unknown latest turn, or the
    turn a run is resuming from (which then meets the lock); fork at any other turn."""
    assert plan_continuation("t", "2", latest_turn_id="2", resuming_from=None) == Continuation("t")
    assert plan_continuation("t", None, latest_turn_id="2", resuming_from=None) == Continuation("t")
    assert plan_continuation("t", "1", latest_turn_id=None, resuming_from=None) == Continuation("t")
    assert plan_continuation("t", "2", latest_turn_id="3", resuming_from="2") == Continuation("t")
    assert plan_continuation("t", "1", latest_turn_id="3", resuming_from="2") == Continuation(
        "t", fork_at="1"
    )
    assert plan_continuation("t", "1", latest_turn_id="2", resuming_from=None) == Continuation(
        "t", fork_at="1"
    )


def test_locks_remember_the_turn_a_resume_continues_from() -> None:
    """``resuming_from`` names the claimed run's starting turn until the thread is free."""
    locks = ThreadLocks()
    lease = RunLease(locks)
    lease.claim("t", "turn-2")
    assert locks.resuming_from("t") == "turn-2"
    lease.release()
    assert locks.resuming_from("t") is None
    locks.hold("new")
    assert locks.resuming_from("new") is None


def test_branching_refusal_names_the_field_and_the_backend() -> None:
    error = branching_unsupported()
    assert (error.status_code, error.param) == (400, "previous_response_id")
    assert "CODEX_BACKEND=app-server" in error.message
