"""``trio_codex.run.runner`` on its own: the slot accounting of ``CodexRunner`` with the scripted
backend, no app and no process."""

from __future__ import annotations

import trio

from tests.support.fakes import ScriptedBackend
from trio_codex.run.runner import CodexRunner, RunSpec


async def test_cancelled_right_after_a_free_slot_is_granted_leaks_nothing() -> None:
    """The leak the first chaos run found, replayed: a request cancelled at the checkpoint
    right after a slot was granted without waiting (the client left at that instant) must
    not keep the slot."""
    runner = CodexRunner(ScriptedBackend(), max_parallel=2, queue_timeout=5, exec_timeout=5)
    async with trio.open_nursery() as nursery:
        with trio.CancelScope() as scope:
            scope.cancel()
            await runner.start(nursery, RunSpec(prompt="x"))
    assert scope.cancelled_caught
    assert runner.limiter.borrowed_tokens == 0
    assert runner.running.value == 0
