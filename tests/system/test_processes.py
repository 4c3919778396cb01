"""Layer 3: real processes (the fake codex) and real sockets (Hypercorn on port 0), on both
backends (``codex_backend``: ``exec`` and ``app-server``).

Every wait is for an event (the fake's notify FIFO, a pidfd turning readable, a response
byte), bounded by ``trio.fail_after``; process death is checked through ``/proc``.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio

from tests.support.fakes import TEST_CATALOG, make_fifo, make_settings, read_notify
from tests.support.harness import alive, chat_body, wait_gone
from tests.support.servers import ServerFactory
from trio_codex import create_app
from trio_codex.api import components
from trio_codex.codex.backends import CodexBackend, make_backend
from trio_codex.codex.exec import EXIT_DRAIN
from trio_codex.run.events import CodexEvent, Transcript
from trio_codex.run.runner import CodexRunner, RunSpec
from trio_codex.settings import BackendName, Settings

pytestmark = pytest.mark.slow


def codex_backend_of(settings: Settings, **environ: str) -> CodexBackend:
    """The backend ``settings`` name (``CODEX_BACKEND``), with a minimal environment."""
    env = {"PATH": "/usr/bin:/bin", "HOME": str(settings.workdir), **environ}
    return make_backend(settings, environ=env, extra_env_names=())


async def run_collect(backend: CodexBackend, prompt: str) -> tuple[Transcript, int | None]:
    transcript = Transcript()

    async def emit(event: CodexEvent) -> None:
        transcript.feed(event)

    info = await backend.run(RunSpec(prompt=prompt), emit)
    return transcript, info.exit_code


async def assert_all_dead(pids: list[int]) -> None:
    with trio.fail_after(5):
        for pid in pids:
            await wait_gone(pid)
    assert not any(alive(pid) for pid in pids)


async def cancel_after_notify(
    backend: CodexBackend, prompt: str, fifo: Path
) -> tuple[list[int], float]:
    """Start a run, wait for the fake's pids, cancel; return pids and the cancel latency."""
    pids: list[int] = []
    async with trio.open_nursery() as nursery:

        async def run() -> None:
            await run_collect(backend, prompt)

        nursery.start_soon(run)
        pids = await read_notify(fifo)
        assert all(alive(p) for p in pids)
        cancelled_at = trio.current_time()
        nursery.cancel_scope.cancel(reason="test: simulated client disconnect")
    return pids, trio.current_time() - cancelled_at


async def test_the_backend_runs_and_parses(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName
) -> None:
    """A normal run yields the answer, the usage and exit 0; the prompt arrived on stdin."""
    backend = codex_backend_of(
        make_settings(tmp_path, codex_path=fake_codex, backend=codex_backend)
    )
    with trio.fail_after(10):
        transcript, rc = await run_collect(backend, "ping [[codex:mode=stdin_echo]]")
    assert rc == 0
    assert transcript.text == "ping [[codex:mode=stdin_echo]]"
    assert transcript.usage is not None
    assert transcript.usage.input_tokens == 11


async def test_cancel_kills_child_and_term_ignoring_grandchild(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName
) -> None:
    """Cancelling a run kills the whole group, including a grandchild that ignores SIGTERM."""
    fifo = make_fifo(tmp_path)
    backend = codex_backend_of(
        make_settings(tmp_path, codex_path=fake_codex, backend=codex_backend, kill_grace=5.0)
    )
    with trio.fail_after(10):
        pids, latency = await cancel_after_notify(
            backend, f"[[codex:mode=grandchild;notify={fifo}]]", fifo
        )
        await assert_all_dead(pids)
    assert len(pids) == 2
    assert latency < 1.0  # the leader dies on SIGTERM; the sweep gets the grandchild at once


async def test_term_ignoring_child_is_killed_after_grace(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName
) -> None:
    """A child that ignores SIGTERM is SIGKILLed after the grace period, not later."""
    fifo = make_fifo(tmp_path)
    backend = codex_backend_of(
        make_settings(tmp_path, codex_path=fake_codex, backend=codex_backend, kill_grace=0.3)
    )
    with trio.fail_after(10):
        pids, latency = await cancel_after_notify(
            backend, f"[[codex:mode=hang_ignore_term;notify={fifo}]]", fifo
        )
        await assert_all_dead(pids)
    assert 0.3 <= latency < 1.3


async def test_exec_timeout_kills_the_group(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName
) -> None:
    """The runner's execution deadline kills child and grandchild and reports a timeout."""
    fifo = make_fifo(tmp_path)
    settings = make_settings(tmp_path, codex_path=fake_codex, backend=codex_backend)
    runner = CodexRunner(
        codex_backend_of(settings), max_parallel=1, queue_timeout=1, exec_timeout=1.0
    )
    async with trio.open_nursery() as nursery:
        with trio.fail_after(10):
            handle = await runner.start(
                nursery, RunSpec(prompt=f"[[codex:mode=grandchild;notify={fifo}]]")
            )
            handle.attach()
            pids = await read_notify(fifo)
            async for _ in handle.events:
                pass
            await handle.done.wait()
            await assert_all_dead(pids)
    assert handle.error is not None
    assert handle.error.status_code == 504
    assert runner.limiter.borrowed_tokens == 0


async def test_child_that_closes_stdout_but_keeps_running_is_killed(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName
) -> None:
    """Stdout EOF ends the run within the drain period, and the still-running child dies."""
    fifo = make_fifo(tmp_path)
    backend = codex_backend_of(
        make_settings(tmp_path, codex_path=fake_codex, backend=codex_backend)
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            results: list[int | None] = []

            async def run() -> None:
                results.append(
                    (await run_collect(backend, f"[[codex:mode=close_stdout;notify={fifo}]]"))[1]
                )

            nursery.start_soon(run)
            pids = await read_notify(fifo)
        await assert_all_dead(pids)
    assert results == [-15]


async def test_grandchild_holding_stdout_does_not_pin_the_run(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName
) -> None:
    """The leader answers and exits; a grandchild keeping stdout open is killed, the run ends."""
    fifo = make_fifo(tmp_path)
    backend = codex_backend_of(
        make_settings(tmp_path, codex_path=fake_codex, backend=codex_backend)
    )
    with trio.fail_after(10):
        async with trio.open_nursery() as nursery:
            outcome: list[tuple[Transcript, int | None]] = []

            async def run() -> None:
                outcome.append(
                    await run_collect(backend, f"[[codex:mode=orphan_stdout;notify={fifo}]]")
                )

            nursery.start_soon(run)
            pids = await read_notify(fifo)
            started = trio.current_time()
        assert trio.current_time() - started < EXIT_DRAIN + 2
        await assert_all_dead(pids)
    transcript, rc = outcome[0]
    assert rc == 0
    assert transcript.text == "done"


async def test_garbage_does_not_break_an_exec_run(tmp_path: Path, fake_codex: Path) -> None:
    """Junk, half JSON and unknown events are skipped; the answer arrives. exec only: on
    app-server a line that is not JSON-RPC breaks the protocol and ends the run with a 502
    (``tests/system/test_app_server.py``)."""
    backend = codex_backend_of(make_settings(tmp_path, codex_path=fake_codex, backend="exec"))
    with trio.fail_after(20):
        transcript, rc = await run_collect(backend, "[[codex:mode=garbage]]")
    assert rc == 0
    assert transcript.failure(rc) is None
    assert transcript.text == "survived"


async def test_a_huge_line_does_not_break_the_run(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName
) -> None:
    """A 10 MB line (exec: not JSON; app-server: a notification nobody knows) is skipped."""
    backend = codex_backend_of(
        make_settings(tmp_path, codex_path=fake_codex, backend=codex_backend)
    )
    with trio.fail_after(20):
        transcript, rc = await run_collect(backend, "[[codex:mode=bigline]]")
    assert rc == 0
    assert transcript.failure(rc) is None
    assert transcript.text == "after big line"


async def test_child_environment_has_no_server_secrets(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName
) -> None:
    """A Codex that prints its environment sees no PROXY_API_KEY or other server settings."""
    backend = codex_backend_of(
        make_settings(tmp_path, codex_path=fake_codex, backend=codex_backend),
        PROXY_API_KEY="sk-server-secret",
        CODEX_TIMEOUT="5",
        RATE_LIMIT_PER_MINUTE="3",
    )
    with trio.fail_after(10):
        transcript, _ = await run_collect(backend, "[[codex:mode=env]]")
    env = json.loads(transcript.text)
    assert "PROXY_API_KEY" not in env
    assert "sk-server-secret" not in transcript.text
    assert "CODEX_TIMEOUT" not in env
    assert "RATE_LIMIT_PER_MINUTE" not in env
    assert env["CODEX_HOME"] == str(tmp_path / "codex-home")


# --- over HTTP: real Hypercorn ----------------------------------------------------------------


def http_app(tmp_path: Path, fake_codex: Path, **overrides: Any) -> Any:
    settings = make_settings(tmp_path, codex_path=fake_codex, **overrides)
    env = {"PATH": "/usr/bin:/bin", "HOME": str(settings.workdir)}
    return create_app(settings, catalog=TEST_CATALOG, environ=env)


async def request_until_notified(
    url: str, body: dict[str, Any], fifo: Path, *, stream: bool
) -> list[int]:
    """Send a request, wait for the fake's pids, then drop the connection."""
    async with trio.open_nursery() as nursery:

        async def call() -> None:
            async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                if stream:
                    async with client.stream("POST", "/v1/chat/completions", json=body) as r:
                        async for _ in r.aiter_raw():
                            pass
                else:
                    await client.post("/v1/chat/completions", json=body)

        nursery.start_soon(call)
        pids = await read_notify(fifo)
        nursery.cancel_scope.cancel(reason="test: client disconnects")
    return pids


@pytest.mark.parametrize("stream", [False, True])
async def test_client_disconnect_kills_group_over_http(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    stream: bool,
) -> None:
    """Closing the connection mid-run (plain or streaming) kills child and grandchild."""
    app = http_app(tmp_path, fake_codex, backend=codex_backend, kill_grace=5.0)
    url = await start_server(app)
    fifo = make_fifo(tmp_path)
    with trio.fail_after(15):
        pids = await request_until_notified(
            url,
            chat_body(f"[[codex:mode=grandchild;notify={fifo}]]", stream=stream),
            fifo,
            stream=stream,
        )
        await assert_all_dead(pids)
        service = components(app).service
        await service.runner.running.wait_value(0)
    assert service.runner.limiter.borrowed_tokens == 0


async def test_client_that_stops_reading_cannot_hold_codex_past_timeout(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName, start_server: ServerFactory
) -> None:
    """A connected client that never reads: the group still dies at CODEX_TIMEOUT."""
    app = http_app(tmp_path, fake_codex, backend=codex_backend, timeout=2.0)
    url = await start_server(app)
    host, port = url.removeprefix("http://").split(":")
    fifo = make_fifo(tmp_path)
    payload = json.dumps(chat_body(f"[[codex:mode=flood;notify={fifo}]]", stream=True)).encode()
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    sock = await trio.open_tcp_stream(host, int(port))
    try:
        await sock.send_all(request)
        assert (await sock.receive_some(100)).startswith(b"HTTP/1.1 200")
        with trio.fail_after(15):
            pids = await read_notify(fifo)
            started = trio.current_time()
            await assert_all_dead(pids)
        assert trio.current_time() - started < 2.0 + 1.0 + 0.5
    finally:
        await sock.aclose()


async def test_disconnect_while_queued_frees_the_waiter(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName, start_server: ServerFactory
) -> None:
    """A queued client that leaves is not left waiting on the limiter."""
    app = http_app(
        tmp_path, fake_codex, backend=codex_backend, max_parallel_requests=1, queue_timeout=30.0
    )
    url = await start_server(app)
    runner = components(app).runner
    limiter = runner.limiter
    fifo = make_fifo(tmp_path)
    with trio.fail_after(15):
        async with trio.open_nursery() as outer:

            async def holder() -> None:
                async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                    await client.post(
                        "/v1/chat/completions", json=chat_body(f"[[codex:mode=hang;notify={fifo}]]")
                    )

            outer.start_soon(holder)
            pids = await read_notify(fifo)
            async with trio.open_nursery() as waiter:

                async def queued() -> None:
                    async with httpx.AsyncClient(base_url=url, timeout=30) as client:
                        await client.post("/v1/chat/completions", json=chat_body("queued"))

                waiter.start_soon(queued)
                await runner.queued.wait_value(1)
                waiter.cancel_scope.cancel()
            await runner.queued.wait_value(0)
            outer.cancel_scope.cancel()
        await assert_all_dead(pids)
    assert limiter.statistics().tasks_waiting == 0
