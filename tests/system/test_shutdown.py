"""Shutdown and sudden death of a real server process, and the reaper sidecar on its own.

The server runs as a child process (``hypercorn trio_codex.app:app -k trio``, default one worker,
or ``python -m trio_codex``) with the fake codex, on 127.0.0.1 port 0. Every wait is for an event
(the fake's notify FIFO, a pidfd turning readable, a line on stderr) and is bounded by ``trio.fail_after``.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import trio

from tests.support.fakes import make_fifo, read_notify
from tests.support.harness import (
    ServerProcess,
    alive,
    assert_no_process_in,
    chat_body,
    check_completion,
    check_stream,
    children_of,
    cmdline,
    http_request,
    kill_all_in,
    parent_of,
    parse_response,
    release_gate,
    run_server,
    server_env,
    wait_all_gone,
    wait_gone,
)
from tests.support.paths import REPO_ROOT
from trio_codex.codex.reaper import REAPER_MAIN, Reaper
from trio_codex.settings import BackendName

pytestmark = pytest.mark.slow

GRACEFUL = 2  # seconds (hypercorn takes an integer)
GRACE = 0.5


async def raw_call(server: ServerProcess, body: dict[str, object]) -> bytes:
    """Send one request; return every byte received until the server closed or answered."""
    host, port = server.hostport
    sock = await trio.open_tcp_stream(host, port)
    data = bytearray()
    async with sock:
        await sock.send_all(http_request(host, port, body))
        while chunk := await sock.receive_some(65536):
            data += chunk
            if parse_response(bytes(data)) is not None:
                break
    return bytes(data)


@pytest.mark.parametrize(
    ("launcher", "sig"),
    [
        ("hypercorn", signal.SIGTERM),
        ("hypercorn", signal.SIGINT),
        ("module", signal.SIGTERM),
        ("module", signal.SIGINT),
    ],
    ids=["hypercorn-SIGTERM", "hypercorn-SIGINT", "module-SIGTERM", "module-SIGINT"],
)
async def test_graceful_shutdown_with_requests_in_flight(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    launcher: str,
    sig: signal.Signals,
) -> None:
    """SIGTERM/SIGINT with five requests in flight: the two that can finish within the graceful
    timeout get complete answers, the three that cannot are cancelled at the graceful timeout
    (not before), every Codex process (a SIGTERM-ignoring one and a SIGTERM-ignoring
    grandchild included) is dead, and the server exits 0 within graceful + grace + 1 s."""
    env, workdir = server_env(
        tmp_path,
        fake_codex,
        CODEX_KILL_GRACE_SECONDS=GRACE,
        CODEX_TIMEOUT=60,
        CODEX_MAX_PARALLEL_REQUESTS=8,
        CODEX_BACKEND=codex_backend,
    )
    notify = {name: make_fifo(tmp_path, f"notify-{name}") for name in "abcde"}
    gate_d, gate_e = make_fifo(tmp_path, "gate-d"), make_fifo(tmp_path, "gate-e")
    requests = {
        "a": chat_body(f"[[codex:mode=hang;notify={notify['a']}]]"),
        "b": chat_body(f"[[codex:mode=grandchild;notify={notify['b']}]]", stream=True),
        "c": chat_body(f"[[codex:mode=hang_ignore_term;notify={notify['c']}]]"),
        "d": chat_body(f"[[codex:mode=gate;reply=finished;notify={notify['d']};gate={gate_d}]]"),
        "e": chat_body(
            f"[[codex:mode=stream_gate;count=2;notify={notify['e']};gate={gate_e}]]", stream=True
        ),
    }
    replies: dict[str, bytes] = {}
    try:
        with trio.fail_after(40):
            async with run_server(launcher, env, graceful=GRACEFUL, cwd=REPO_ROOT) as server:

                async def call(name: str) -> None:
                    replies[name] = await raw_call(server, requests[name])

                async with trio.open_nursery() as clients:
                    for name in requests:
                        clients.start_soon(call, name)
                    pids = {name: await read_notify(notify[name]) for name in requests}
                    signalled = trio.current_time()
                    os.kill(server.proc.pid, sig)
                    if launcher == "module":  # it says when it begins (Hypercorn's CLI does not)
                        await server.wait_for(f"{sig.name} received: shutting down")
                    # Requests that finish within the graceful timeout finish normally.
                    await release_gate(gate_d)
                    await release_gate(gate_e)
                    cut = [pid for name in "abc" for pid in pids[name]]
                    deaths = await wait_all_gone(cut)
                rc = await server.proc.wait()
                exited = trio.current_time() - signalled
            await assert_no_process_in(workdir)
    finally:
        kill_all_in(workdir)
    assert rc == 0, server.text
    assert "clients not reading" not in server.text  # the orderly path, not the hard stop
    died = sorted(t - signalled for t in deaths.values())
    print(
        f"\n{launcher} {sig.name}: Codex processes dead at {[round(t, 2) for t in died]} s, "
        f"server exited 0 at {exited:.2f} s (graceful {GRACEFUL} s, grace {GRACE} s)"
    )
    assert died[0] >= GRACEFUL, died  # nobody was cut before the graceful timeout
    assert died[-1] <= GRACEFUL + GRACE + 1.0, died
    assert exited <= GRACEFUL + GRACE + 1.0, exited
    # The finished ones got complete, well-formed answers.
    answer_d = parse_response(replies["d"])
    assert answer_d is not None
    assert answer_d.status == 200
    assert check_completion(json.loads(answer_d.body)) == "finished"
    answer_e = parse_response(replies["e"])
    assert answer_e is not None
    assert answer_e.status == 200
    outcome = check_stream(answer_e.body)
    assert outcome.done
    # exec: one agent message per part; app-server: one message streamed as deltas.
    parts = [f"part-{n}" for n in range(4)]
    expected = "\n\n".join(parts) if codex_backend == "exec" else " ".join(parts) + " "
    assert outcome.text == expected
    # The cancelled ones got no complete response; the stream had started.
    for name in "abc":
        assert parse_response(replies[name]) is None, replies[name][:300]
    assert replies["b"].startswith(b"HTTP/1.1 200")


async def test_worker_killed_with_sigkill_leaves_no_codex(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName
) -> None:
    """SIGKILL of Hypercorn's worker process with three runs in flight (one ignores SIGTERM,
    one has a SIGTERM-ignoring grandchild): the reaper kills every group at once, then exits."""
    env, workdir = server_env(
        tmp_path,
        fake_codex,
        CODEX_KILL_GRACE_SECONDS=5,
        CODEX_TIMEOUT=60,
        CODEX_BACKEND=codex_backend,
    )
    notify = {name: make_fifo(tmp_path, f"notify-{name}") for name in "abc"}
    requests = {
        "a": chat_body(f"[[codex:mode=grandchild;notify={notify['a']}]]", stream=True),
        "b": chat_body(f"[[codex:mode=hang_ignore_term;notify={notify['b']}]]"),
        "c": chat_body(f"[[codex:mode=hang;notify={notify['c']}]]"),
    }
    try:
        with trio.fail_after(30):
            async with run_server("hypercorn", env, graceful=GRACEFUL, cwd=REPO_ROOT) as server:
                async with trio.open_nursery() as clients:
                    for body in requests.values():
                        clients.start_soon(raw_call, server, body)
                    pids = [pid for name in requests for pid in await read_notify(notify[name])]
                    assert len(pids) == 4
                    worker = parent_of(pids[0])
                    assert worker is not None
                    assert "multiprocessing" in cmdline(worker)
                    assert parent_of(worker) == server.proc.pid
                    (reaper,) = [p for p in children_of(worker) if "_reaper_main" in cmdline(p)]
                    killed = trio.current_time()
                    os.kill(worker, signal.SIGKILL)
                    deaths = await wait_all_gone(pids)
                    await wait_gone(reaper)
                await server.wait_for(r"reaper: the server ended without cleaning up")
                await server.proc.wait()
            await assert_no_process_in(workdir)
    finally:
        kill_all_in(workdir)
    slowest = max(deaths.values()) - killed
    print(f"\nworker SIGKILL: all 4 Codex processes dead {slowest * 1000:.0f} ms later")
    assert slowest < 1.0, slowest  # at once, not after a grace period or a restart
    assert "sent SIGKILL to 3 Codex process group(s)" in server.text


async def test_module_exits_even_when_a_client_stops_reading(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName
) -> None:
    """A streaming client that stops reading pins its connection in Hypercorn's shielded send;
    ``python -m trio_codex`` still stops the run and exits 0 by graceful + grace + 1 s."""
    env, workdir = server_env(
        tmp_path,
        fake_codex,
        CODEX_KILL_GRACE_SECONDS=GRACE,
        CODEX_TIMEOUT=60,
        CODEX_BACKEND=codex_backend,
    )
    fifo = make_fifo(tmp_path)
    try:
        with trio.fail_after(30):
            async with run_server("module", env, graceful=GRACEFUL, cwd=REPO_ROOT) as server:
                host, port = server.hostport
                sock = await trio.open_tcp_stream(host, port)
                sock.setsockopt(  # a small receive window fills sooner
                    trio.socket.SOL_SOCKET, trio.socket.SO_RCVBUF, 4096
                )
                body = chat_body(f"[[codex:mode=flood;notify={fifo}]]", stream=True)
                await sock.send_all(http_request(host, port, body))
                assert (await sock.receive_some(12)).startswith(b"HTTP/1.1 200")
                (pid,) = await read_notify(fifo)
                signalled = trio.current_time()
                os.kill(server.proc.pid, signal.SIGTERM)
                await wait_gone(pid)
                rc = await server.proc.wait()
                exited = trio.current_time() - signalled
                await sock.aclose()
            await assert_no_process_in(workdir)
    finally:
        kill_all_in(workdir)
    assert rc == 0, server.text
    assert exited <= GRACEFUL + GRACE + 1.0, exited
    assert "clients not reading" in server.text


# --------------------------------------------------------------------------- the reaper itself


@dataclass
class Group:
    """A session leader with a SIGTERM-ignoring child, like Codex and a grandchild."""

    leader: subprocess.Popen[bytes]
    child: int

    @property
    def pids(self) -> list[int]:
        return [self.leader.pid, self.child]

    def kill(self) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.leader.pid, signal.SIGKILL)
        self.leader.wait()


def spawn_group() -> Group:
    code = (
        "import signal, subprocess, sys, time\n"
        "c = subprocess.Popen([sys.executable, '-c', "
        "'import signal, time\\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
        "while True: time.sleep(3600)'])\n"
        "print(c.pid, flush=True)\n"
        "while True: time.sleep(3600)\n"
    )
    leader = subprocess.Popen(
        [sys.executable, "-c", code], stdout=subprocess.PIPE, start_new_session=True
    )
    assert leader.stdout is not None
    child = int(leader.stdout.readline())
    leader.stdout.close()
    return Group(leader, child)


async def test_reaper_sidecar_kills_announced_groups_only() -> None:
    """End of file on its stdin: announced groups die, withdrawn ones do not; a pid that is
    not a session leader (a reused pid) is left alone; SIGTERM does not stop it."""
    kept, doomed = spawn_group(), spawn_group()
    try:
        with trio.fail_after(15):
            reaper = await trio.lowlevel.open_process(
                [sys.executable, "-I", "-S", os.fspath(REAPER_MAIN)],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            assert reaper.stdin is not None
            assert reaper.stdout is not None
            assert reaper.stderr is not None
            assert await reaper.stdout.receive_some(64) == b"ready\n"
            os.kill(reaper.pid, signal.SIGTERM)  # ignored
            # kept.child is not a session leader: never signalled on its own
            await reaper.stdin.send_all(
                f"+{kept.leader.pid}\n+{doomed.leader.pid}\n+{kept.child}\n"
                f"-{kept.leader.pid}\n".encode()
            )
            await reaper.stdin.aclose()
            await wait_all_gone(doomed.pids)
            assert await reaper.wait() == 0
            message = await reaper.stderr.receive_some(4096)
            await reaper.stdout.aclose()
            await reaper.stderr.aclose()
            assert all(alive(pid) for pid in kept.pids)
    finally:
        kept.kill()
        doomed.kill()
    assert b"ended without cleaning up; sent SIGKILL to 1 Codex process group(s)" in message


async def test_reaper_is_restarted_and_told_again() -> None:
    """A sidecar killed while the server runs is replaced and learns every live group again;
    a cancelled ``Reaper.run`` waits for live groups, then closes the pipe and reaps it."""
    group = spawn_group()
    reaper = Reaper(settle=0.2)
    try:
        with trio.fail_after(15):
            async with trio.open_nursery() as nursery:
                await nursery.start(reaper.run)
                first = reaper.pid
                assert first is not None
                reaper.register(group.leader.pid)
                os.kill(first, signal.SIGKILL)
                await reaper.spawns.wait_value(2)
                second = reaper.pid
                assert second is not None
                assert second != first
                assert alive(group.leader.pid)
                nursery.cancel_scope.cancel()  # settle (0.2 s) runs out: the sidecar kills it
            await wait_all_gone(group.pids)
            await wait_gone(second)
    finally:
        group.kill()
