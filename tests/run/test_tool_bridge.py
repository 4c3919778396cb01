"""The bridge a backend awaits for the client's tool results, in virtual time."""

from __future__ import annotations

import pytest
import trio
from trio.testing import MockClock

from trio_codex.run.tool_bridge import ToolBridge
from trio_codex.run.tools import ToolOutput


async def test_a_result_put_before_or_during_the_wait_is_handed_out_once(
    autojump_clock: MockClock,
) -> None:
    bridge = ToolBridge(timeout=60)
    bridge.put(ToolOutput("early", "1"))
    assert await bridge.get("early") == ToolOutput("early", "1")
    got: list[ToolOutput] = []

    async def wait() -> None:
        got.append(await bridge.get("late"))

    async with trio.open_nursery() as nursery:
        nursery.start_soon(wait)
        await trio.sleep(5)
        waiting = [bridge.waiting]
        bridge.put(ToolOutput("other", "x"))
        await trio.sleep(5)
        assert got == []
        bridge.put(ToolOutput("late", "2"))
    assert got == [ToolOutput("late", "2")]
    assert [*waiting, bridge.waiting] == ["late", None]
    with trio.move_on_after(1) as again:
        await bridge.get("early")  # handed out already: waits again
    assert again.cancelled_caught, "a result was handed out twice"


async def test_no_result_within_the_timeout_raises(autojump_clock: MockClock) -> None:
    bridge = ToolBridge(timeout=300)
    start = trio.current_time()
    with pytest.raises(TimeoutError, match="call_1"):
        await bridge.get("call_1")
    assert trio.current_time() - start == pytest.approx(300)
    assert bridge.waiting is None
