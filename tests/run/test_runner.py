"""``trio_codex.run.runner`` on its own: the slot accounting of ``CodexRunner`` with the scripted
backend, no app and no process."""

from __future__ import annotations

import trio
from trio.testing import MockClock

from tests.support.fakes import ScriptedBackend
from trio_codex.run.events import ToolCallWaiting
from trio_codex.run.runner import CodexRunner, RunSpec
from trio_codex.run.tools import ToolOutput, ToolSet, ToolSpec


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


async def test_waiting_for_tool_results_is_not_idleness(autojump_clock: MockClock) -> None:
    """CODEX_IDLE_TIMEOUT does not end a run that waits for the client's tool results (the
    tool-result bound does); once the results are in, the run completes."""
    runner = CodexRunner(
        ScriptedBackend(),
        max_parallel=1,
        queue_timeout=5,
        exec_timeout=600,
        idle_timeout=3,
        tool_result_timeout=60,
    )
    spec = RunSpec(prompt="[[run:call=f]]", tools=ToolSet((ToolSpec("f", "", {"type": "object"}),)))
    async with trio.open_nursery() as nursery:
        handle = await runner.start(nursery, spec)
        handle.attach()
        async for event in handle.events:
            if isinstance(event, ToolCallWaiting):
                await trio.sleep(30)  # ten idle timeouts
                assert handle.tools is not None
                handle.tools.put(ToolOutput("call_1", "ok"))
        await handle.done.wait()
    assert handle.failure() is None
    assert handle.transcript.text == "tool results: ok"
