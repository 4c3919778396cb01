"""The request record (``http/access.py``): one escaped log line per request, whatever happened,
and no run outliving its complete answer by more than ``DETACHED_EXIT_LIMIT``. Virtual time."""

from __future__ import annotations

from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from tests.support.fakes import ScriptedBackend
from tests.support.harness import chat_body
from tests.support.servers import runner_of, running_app
from trio_codex.run.runner import DETACHED_EXIT_LIMIT


def _lines(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [m for m in caplog.messages if m.startswith("request id=")]


async def test_a_model_or_path_with_a_newline_cannot_forge_a_log_line(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """Control characters in the model and the path are escaped: still one line each."""
    caplog.set_level("INFO", logger="trio_codex")
    async with running_app(tmp_path, backend) as app:
        client = app.test_client()
        forged = "x\nrequest id=req_forged status=200"
        r = await client.post("/v1/chat/completions", json={**chat_body(), "model": forged})
        assert r.status_code == 404
        r = await client.get("/v1/models/a%0Arequest%20id=req_forged")
        assert r.status_code == 404
        await trio.testing.wait_all_tasks_blocked()
    lines = _lines(caplog)
    assert len(lines) == 2, lines
    assert all("\n" not in line for line in lines), lines
    assert not any(line.startswith("request id=req_forged") for line in lines)
    assert '"x\\nrequest id=req_forged status=200"' in lines[0]


async def test_a_client_that_leaves_mid_run_gets_its_line(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A non-streamed request cancelled at t=1 (the client left) is logged once, as
    client_closed, after its run was cancelled."""
    caplog.set_level("INFO", logger="trio_codex")
    async with running_app(tmp_path, backend) as app:
        client = app.test_client()
        with trio.move_on_after(1):
            await client.post("/v1/chat/completions", json=chat_body("[[run:sleep=30]]"))
        await runner_of(app).running.wait_value(0)
        await trio.testing.wait_all_tasks_blocked()
        assert backend.runs[0].cancelled
    lines = _lines(caplog)
    assert len(lines) == 1, lines
    assert "status=- code=client_closed" in lines[0]


@pytest.mark.parametrize("stream", [False, True])
async def test_a_detached_run_is_cancelled_after_the_exit_limit(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend, stream: bool
) -> None:
    """A chat answered at turn.completed whose Codex never exits keeps its slot for exactly
    DETACHED_EXIT_LIMIT seconds, then the run is cancelled (not CODEX_TIMEOUT later)."""
    async with running_app(tmp_path, backend, timeout=600.0) as app:
        start = trio.current_time()
        r = await app.test_client().post(
            "/v1/chat/completions", json=chat_body("[[run:reply=done;linger=500]]", stream=stream)
        )
        assert b"done" in await r.get_data()
        assert trio.current_time() == start
        await runner_of(app).running.wait_value(0)
        assert trio.current_time() == start + DETACHED_EXIT_LIMIT
        assert backend.runs[0].cancelled
