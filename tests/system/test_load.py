"""Load: 200 concurrent clients against ``CODEX_MAX_PARALLEL_REQUESTS=4`` on a real Hypercorn with
the fake codex, and the memory a queued request costs.

* Every request ends within queue timeout + exec timeout + 1 s, with 200 (a complete chat
  completion or SSE stream) or 503 ``queue_timeout`` with ``Retry-After``; none hangs.
* Live Codex processes never exceed 4: counted exactly through ``ExecBackend``'s ``on_spawn`` /
  ``on_reap`` hooks (``on_reap`` runs once the whole group is dead), and checked independently
  in ``/proc`` at every spawn.
* Memory per queued request: the Python heap (tracemalloc) and the RSS growth while 200
  requests wait for a slot, divided by 200 (clients are raw sockets in the same process: a few
  KiB each of that is theirs).

Figures are printed (``pytest -s``).
"""

from __future__ import annotations

import collections
import dataclasses
import json
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import pytest
import trio

from tests.support.fakes import TEST_CATALOG, make_fifo, make_settings, read_notify
from tests.support.harness import (
    assert_no_process_in,
    chat_body,
    check_completion,
    check_error,
    check_stream,
    http_request,
    kill_all_in,
    parse_response,
    processes_in,
    raw_exchange,
    release_gate,
    rss_kib,
)
from tests.support.servers import ServerFactory
from trio_codex import create_app
from trio_codex.api import components
from trio_codex.codex.exec import ExecBackend

pytestmark = pytest.mark.slow

CLIENTS = 200
SLOTS = 4
QUEUE_TIMEOUT = 3.0
EXEC_TIMEOUT = 4.0
#: A queued request may cost at most this much memory (server and its raw-socket client).
QUEUED_BOUND_KIB = 256


@dataclasses.dataclass
class LiveCount:
    """Codex groups alive, from the backend's hooks, with an independent /proc check."""

    workdir: Path
    live: int = 0
    peak: int = 0
    proc_peak: int = 0
    spawns: int = 0

    def spawned(self, pgid: int) -> None:
        self.live += 1
        self.spawns += 1
        self.peak = max(self.peak, self.live)
        self.proc_peak = max(self.proc_peak, len(processes_in(self.workdir)))

    def reaped(self, pgid: int) -> None:
        self.live -= 1


@dataclasses.dataclass
class Outcome:
    stream: bool
    seconds: float
    status: int | None
    label: str


async def one_client(host: str, port: int, index: int, *, stream: bool) -> Outcome:
    reply = f"answer-{index}"
    body = chat_body(f"[[codex:mode=slow;delay_ms=150;reply={reply}]]", stream=stream)
    started = trio.current_time()
    sock = await trio.open_tcp_stream(host, port)
    data = bytearray()
    async with sock:
        await sock.send_all(http_request(host, port, body))
        while (response := parse_response(bytes(data))) is None:
            chunk = await sock.receive_some(65536)
            assert chunk, f"the server closed early: {bytes(data)[-300:]!r}"
            data += chunk
    seconds = trio.current_time() - started
    assert response.headers["x-request-id"].startswith("req_")
    if response.status == 503:
        error = check_error(json.loads(response.body))
        assert error["code"] == "queue_timeout", error
        assert int(response.headers["retry-after"]) >= 1, response.headers
        return Outcome(stream, seconds, 503, "503 queue_timeout")
    assert response.status == 200, response
    if stream:
        outcome = check_stream(response.body)
        assert outcome.done, outcome
        assert outcome.text == reply
    else:
        assert check_completion(json.loads(response.body)) == reply
    return Outcome(stream, seconds, 200, "200")


async def test_200_clients_against_4_slots(
    tmp_path: Path, fake_codex: Path, start_server: ServerFactory
) -> None:
    """200 clients, 4 slots: every request ends in time with 200 or 503, never over 4 Codex."""
    settings = make_settings(
        tmp_path,
        codex_path=fake_codex,
        max_parallel_requests=SLOTS,
        queue_timeout=QUEUE_TIMEOUT,
        timeout=EXEC_TIMEOUT,
    )
    count = LiveCount(settings.workdir)
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    backend = ExecBackend(settings, environ=environ, on_spawn=count.spawned, on_reap=count.reaped)
    app = create_app(settings, backend=backend, catalog=TEST_CATALOG)
    url = await start_server(app)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    runner = components(app).runner
    outcomes: list[Outcome] = []

    async def client(index: int) -> None:
        outcomes.append(await one_client(host, int(port), index, stream=index % 2 == 1))

    try:
        with trio.fail_after(QUEUE_TIMEOUT + EXEC_TIMEOUT + 20):
            started = trio.current_time()
            async with trio.open_nursery() as nursery:
                for index in range(CLIENTS):
                    nursery.start_soon(client, index)
            elapsed = trio.current_time() - started
            await runner.running.wait_value(0)
            await assert_no_process_in(settings.workdir)
    finally:
        kill_all_in(settings.workdir)

    labels = collections.Counter(o.label for o in outcomes)
    slowest = max(o.seconds for o in outcomes)
    served = sorted(o.seconds for o in outcomes if o.status == 200)
    print(
        f"\nload: {CLIENTS} clients, {SLOTS} slots, queue timeout {QUEUE_TIMEOUT} s: "
        f"{dict(labels)} in {elapsed:.2f} s; slowest {slowest:.2f} s; "
        f"200s p50 {served[len(served) // 2]:.2f} s; Codex spawned {count.spawns}, "
        f"peak live {count.peak} (hooks) / {count.proc_peak} (/proc)"
    )
    assert len(outcomes) == CLIENTS
    assert set(labels) <= {"200", "503 queue_timeout"}
    assert labels["200"] >= SLOTS
    assert labels["503 queue_timeout"] > 0
    assert slowest <= QUEUE_TIMEOUT + EXEC_TIMEOUT + 1.0
    assert count.peak == SLOTS  # reached, never exceeded
    assert count.proc_peak <= SLOTS
    assert count.live == 0
    assert runner.limiter.borrowed_tokens == 0
    assert runner.limiter.statistics().tasks_waiting == 0


async def test_memory_per_queued_request(
    tmp_path: Path, fake_codex: Path, start_server: ServerFactory
) -> None:
    """With every slot held, 200 requests wait; what does each cost? (Then all leave.)"""
    settings = make_settings(
        tmp_path,
        codex_path=fake_codex,
        max_parallel_requests=SLOTS,
        queue_timeout=60.0,
        timeout=60.0,
    )
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path)}
    app = create_app(settings, catalog=TEST_CATALOG, environ=environ)
    url = await start_server(app)
    host, port = url.removeprefix("http://").rsplit(":", 1)
    runner = components(app).runner
    gates = [make_fifo(tmp_path, f"gate-{n}") for n in range(SLOTS)]
    notes = [make_fifo(tmp_path, f"notify-{n}") for n in range(SLOTS)]

    async def request(body: dict[str, object]) -> None:
        response = await raw_exchange(host, int(port), http_request(host, int(port), body))
        assert response is not None
        assert response.status == 200

    async def queue_up(count: int, sample: Callable[[], int]) -> int:
        """``count`` queued requests, then they all leave; returns ``sample()`` growth."""
        before = sample()
        async with trio.open_nursery() as waiting:
            for n in range(count):
                waiting.start_soon(request, chat_body(f"queued {n}"))
            await runner.queued.wait_value(count)
            during = sample()
            waiting.cancel_scope.cancel()
        await runner.queued.wait_value(0)
        return during - before

    def traced_kib() -> int:
        return tracemalloc.get_traced_memory()[0] // 1024

    try:
        with trio.fail_after(60):
            async with trio.open_nursery() as holders:
                for gate, note in zip(gates, notes, strict=True):
                    holders.start_soon(
                        request, chat_body(f"[[codex:mode=gate;notify={note};gate={gate}]]")
                    )
                for note in notes:
                    await read_notify(note)
                # RSS: depends on what the allocator kept from earlier tests (an upper bound at
                # best); the Python heap below is the figure.
                rss_growth = await queue_up(CLIENTS, rss_kib)
                # Warm: the Python heap that 200 queued requests hold (tracemalloc).
                tracemalloc.start()
                try:
                    heap_growth = await queue_up(CLIENTS, traced_kib)
                finally:
                    tracemalloc.stop()
                for gate in gates:
                    await release_gate(gate)
            await runner.running.wait_value(0)
            await assert_no_process_in(settings.workdir)
    finally:
        kill_all_in(settings.workdir)
    per_request = rss_growth / CLIENTS
    per_request_heap = heap_growth / CLIENTS
    print(
        f"\nmemory per queued request: {per_request_heap:.1f} KiB of Python heap (tracemalloc), "
        f"{per_request:.1f} KiB of RSS growth (allocator-dependent; server and raw-socket "
        f"client together)"
    )
    assert runner.limiter.borrowed_tokens == 0
    assert runner.limiter.statistics().tasks_waiting == 0
    assert per_request < QUEUED_BOUND_KIB
    assert per_request_heap < QUEUED_BOUND_KIB
