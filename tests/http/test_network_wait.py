"""A Codex that cannot reach its provider ends early with a 503 that names the cause.

Codex retries for ever when its provider is unreachable (no network, DNS, proxy, firewall),
printing ``Reconnecting... waiting for network`` now and then (CODEX_FACTS section 4). The
server surfaces those notices (log, ``: codex:`` stream comments, the error message) and ends the
run after ``CODEX_NETWORK_WAIT_SECONDS`` without progress, long before ``CODEX_TIMEOUT``.
Virtual time with a scripted backend; the real Codex CLI against a closed port is
``tests/system/test_network_wait.py``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from tests.support.harness import chat_body
from tests.support.servers import running_app
from trio_codex.run.events import ErrorEvent, TextDelta, ThreadStarted, TurnCompleted, Usage
from trio_codex.run.runner import Emit, ExitInfo, RunSpec

NOTICE = "Reconnecting... waiting for network (Connection failed: error sending request)"


class UnreachableBackend:
    """Prints a network-wait notice every 5 s for ever; ``recover_at`` makes it get through."""

    def __init__(self, recover_at: float | None = None) -> None:
        self.recover_at = recover_at
        self.cancelled = False

    async def run(self, spec: RunSpec, emit: Emit) -> ExitInfo:
        start = trio.current_time()
        try:
            await emit(ThreadStarted("t"))
            while self.recover_at is None or trio.current_time() - start < self.recover_at:
                await emit(ErrorEvent(NOTICE))
                await trio.sleep(5)
            await emit(TextDelta("m", "back online"))
            await trio.sleep(100)
            await emit(TurnCompleted(Usage()))
            return ExitInfo(0, "")
        except trio.Cancelled:
            self.cancelled = True
            raise


async def test_an_unreachable_provider_is_a_503_after_the_network_wait(
    autojump_clock: MockClock, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """First notice at t=0, wait 30 s: 503 upstream_unreachable at exactly t=30, naming the
    notice; the run is cancelled; the notices are logged."""
    caplog.set_level("WARNING", logger="trio_codex")
    backend = UnreachableBackend()
    async with running_app(tmp_path, backend, timeout=600.0, network_wait=30.0) as app:
        start = trio.current_time()
        r = await app.test_client().post("/v1/chat/completions", json=chat_body())
        assert trio.current_time() - start == 30
        assert r.status_code == 503
        error = (await r.get_json())["error"]
        assert error["code"] == "upstream_unreachable"
        assert NOTICE in error["message"]
        assert backend.cancelled
    assert any(NOTICE in m for m in caplog.messages)


async def test_the_notices_travel_as_stream_comments(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    """A stream carries each notice as a `: codex:` comment, then the error frame."""
    async with running_app(tmp_path, UnreachableBackend(), network_wait=12.0) as app:
        r = await app.test_client().post("/v1/chat/completions", json=chat_body(stream=True))
        text = await r.get_data(as_text=True)
    assert text.count(f": codex: {NOTICE}\n\n") == 3  # t=0, 5, 10
    assert '"code":"upstream_unreachable"' in text
    assert text.endswith("data: [DONE]\n\n")


async def test_progress_resets_the_network_wait(autojump_clock: MockClock, tmp_path: Path) -> None:
    """Codex that gets through after 20 s (under the 30 s wait) is not stopped: the answer
    arrives, however long the turn then takes."""
    async with running_app(tmp_path, UnreachableBackend(recover_at=20), network_wait=30.0) as app:
        r = await app.test_client().post("/v1/chat/completions", json=chat_body())
        assert r.status_code == 200
        assert (await r.get_json())["choices"][0]["message"]["content"] == "back online"
