"""What a request through trio_codex costs, against running ``codex exec`` by hand.

Runs the real Codex CLI (``tests/node``, or ``TRIO_CODEX_TEST_CODEX``) against the fake
Responses upstream (``tests/support/fake_upstream.py``) on 127.0.0.1, and the server as
``python -m trio_codex`` on 127.0.0.1 port 0; nothing leaves the machine. Prints one table; every
figure is given with the baseline it is compared to, measured in the same run, and their ratio.

* per backend (``exec``, ``app-server`` cold, ``app-server`` with a warm spare): p50 of a trivial
  non-stream request and time to first content, against the tuned direct ``codex exec`` floor,
  and the chunks of a reply the upstream streams as 20 deltas 100 ms apart;
* latency (p50, p90) of a trivial non-stream request through the server, against the same
  prompt with ``codex exec --json`` run directly: (a) as a user would type it (the npm launcher,
  default flags), (b) exactly as the server runs it (native binary, ``FAST_FLAGS``,
  ``--ephemeral``); runs are interleaved so drift hits all three alike;
* a streamed reply: time to the first byte and to the first content chunk, against the time
  ``codex exec`` takes to print the answer;
* throughput and p90 at concurrency 1, 4 and 16 with ``CODEX_MAX_PARALLEL_REQUESTS`` equal to
  the concurrency, against the same number of direct runs at the same concurrency;
* server RSS: idle, per running request (Codex excluded) and per queued request, against the
  RSS of one Codex process.

Usage, from the repository root: ``python -m bench.bench [--runs 30] [--requests 48]
[--only backends ...]``. Takes about two minutes (all sections).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Final

from tests.support.codex_cli import (
    FakeUpstream,
    codex_env,
    exec_argv,
    find_codex_cli,
    native_codex_binary,
    private_home,
    write_codex_home,
)
from tests.support.paths import REPO_ROOT
from trio_codex.codex.command import build_command
from trio_codex.run.runner import RunSpec
from trio_codex.settings import Settings

PROMPT = "Say hi. [[fake:reply=Hi there, from the fake upstream.]]"
MODEL = "fake-model"
#: Bounds for every wait in this script.
START_TIMEOUT = 30.0
RUN_TIMEOUT = 60.0


# --------------------------------------------------------------------------- setup


@dataclass
class Lab:
    """A private HOME, CODEX_HOME and workdir wired to one fake upstream."""

    cli: Path  # what a user runs: the npm launcher
    native: Path
    root: Path
    codex_home: Path
    home: Path
    workdir: Path
    env: dict[str, str]
    upstream: FakeUpstream

    def settings(self) -> Settings:
        return Settings(workdir=self.workdir, codex_path=self.cli, codex_home=self.codex_home)


@contextlib.contextmanager
def lab() -> Iterator[Lab]:
    cli = find_codex_cli()
    if cli is None:
        sys.exit("Codex CLI not installed: run npm ci --prefix tests/node")
    native = native_codex_binary(cli) or cli
    root = Path(tempfile.mkdtemp(prefix="trio-codex-bench-"))
    try:
        with FakeUpstream() as upstream:
            codex_home = write_codex_home(root / "codex-home", upstream.base_url)
            home = private_home(root)
            workdir = root / "work"
            workdir.mkdir()
            env = codex_env(home, codex_home)
            yield Lab(cli, native, root, codex_home, home, workdir, env, upstream)
    finally:
        shutil.rmtree(root, ignore_errors=True)


# --------------------------------------------------------------------------- direct runs


def _pipe(stream: IO[bytes] | None) -> IO[bytes]:
    if stream is None:
        raise RuntimeError("a pipe is missing")
    return stream


@dataclass
class Timing:
    total: float
    first_byte: float = 0.0
    first_content: float = 0.0
    #: Streamed: separate content chunks received, and when the last one arrived.
    chunks: int = 0
    last_content: float = 0.0


def run_direct(argv: Sequence[str], env: dict[str, str], cwd: Path, prompt: str) -> Timing:
    """Spawn, feed the prompt, read stdout to the end, wait for exit (what a shell does)."""
    start = time.perf_counter()
    proc = subprocess.Popen(
        list(argv),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        env=env,
        cwd=cwd,
        start_new_session=True,
    )
    stdin, stdout = _pipe(proc.stdin), _pipe(proc.stdout)
    try:
        stdin.write(prompt.encode())
        stdin.close()
        first_content = 0.0
        answered = False
        for line in stdout:
            if not first_content and b'"agent_message"' in line:
                first_content = time.perf_counter() - start
            answered = answered or b'"turn.completed"' in line
        rc = proc.wait(timeout=RUN_TIMEOUT)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
        stdout.close()
    total = time.perf_counter() - start
    if rc != 0 or not answered:
        raise RuntimeError(f"codex exec failed (rc {rc}): {argv}")
    return Timing(total, first_content=first_content)


def default_argv(lab: Lab) -> list[str]:
    """``codex exec --json`` as typed by hand: npm launcher, no extra flags."""
    return exec_argv(lab.cli, lab.workdir, ephemeral=False)


def server_argv(lab: Lab) -> tuple[list[str], dict[str, str]]:
    """Exactly the server's invocation (argv and environment) for PROMPT."""
    from trio_codex.codex.command import resolve_codex_binary

    binary, binary_env = resolve_codex_binary(lab.cli)
    cmd = build_command(
        lab.settings(),
        RunSpec(prompt=PROMPT, model=MODEL),
        binary=binary,
        binary_env=binary_env,
        environ=lab.env,
        extra_env_names=("FAKE_API_KEY",),
    )
    return list(cmd.argv), dict(cmd.env)


# --------------------------------------------------------------------------- the server


@dataclass
class Server:
    proc: subprocess.Popen[bytes]
    host: str
    port: int
    log: list[bytes] = field(default_factory=list)

    def rss_kib(self) -> int:
        status = Path(f"/proc/{self.proc.pid}/status").read_text()
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        return int(match.group(1)) if match else 0


@contextlib.contextmanager
def server(
    lab: Lab, *, parallel: int, timeout: float = 120.0, extra: dict[str, str] | None = None
) -> Iterator[Server]:
    env = {
        **(extra or {}),
        **lab.env,
        "FAKE_API_KEY": "x",
        "CODEX_PATH": str(lab.cli),
        "CODEX_WORKDIR": str(lab.workdir),
        "CODEX_MAX_PARALLEL_REQUESTS": str(parallel),
        "CODEX_QUEUE_TIMEOUT_SECONDS": "120",
        "CODEX_TIMEOUT": str(timeout),
        "CODEX_KILL_GRACE_SECONDS": "0.5",
    }
    proc = subprocess.Popen(
        [sys.executable, "-m", "trio_codex", "--bind", "127.0.0.1:0", "--graceful-timeout", "1"],
        env=env,
        cwd=REPO_ROOT,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        start_new_session=True,
    )
    stderr = _pipe(proc.stderr)
    deadline = time.monotonic() + START_TIMEOUT
    log: list[bytes] = []
    address = None
    while address is None and time.monotonic() < deadline:
        line = stderr.readline()
        if not line:
            break
        log.append(line)
        if match := re.search(rb"listening on http://([\d.]+):(\d+)", line):
            address = (match.group(1).decode(), int(match.group(2)))
    if address is None:
        proc.kill()
        proc.wait()
        sys.exit("the server did not start:\n" + b"".join(log).decode(errors="replace"))
    # Keep draining stderr (one log line per request) so the server never blocks on it.
    drain = ThreadPoolExecutor(1)
    drain.submit(log.extend, stderr)
    try:
        yield Server(proc, address[0], address[1], log)
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
        drain.shutdown()
        stderr.close()


class Connection:
    """A keep-alive HTTP/1.1 connection with first-byte timing (no client library overhead)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.sock = socket.create_connection((host, port), timeout=RUN_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def _reopen(self) -> None:
        self.sock.close()
        self.sock = socket.create_connection((self.host, self.port), timeout=RUN_TIMEOUT)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def close(self) -> None:
        self.sock.close()

    def chat(self, prompt: str, *, stream: bool, retried: bool = False) -> Timing:
        body = json.dumps(
            {"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": prompt}]}
        ).encode()
        request = (
            f"POST /v1/chat/completions HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        ).encode() + body
        start = time.perf_counter()
        self.sock.sendall(request)
        data = bytearray()
        first_byte = first_content = last_content = 0.0
        chunks = 0
        for _ in range(1_000_000):
            try:
                chunk = self.sock.recv(65536)
            except ConnectionResetError:
                chunk = b""  # the server had closed the idle connection before our request
            if not chunk and not data and not retried:
                # An idle keep-alive connection the server closed (Hypercorn: 5 s): reopen.
                self._reopen()
                return self.chat(prompt, stream=stream, retried=True)
            if not chunk:
                raise RuntimeError("the server closed the connection")
            now = time.perf_counter() - start
            first_byte = first_byte or now
            data += chunk
            if stream and (seen := data.count(b'"delta":{"content":"')) > chunks:
                chunks = seen
                first_content = first_content or now
                last_content = now
            if _complete(bytes(data)):
                break
        total = time.perf_counter() - start
        head = bytes(data[:12])
        if head != b"HTTP/1.1 200" or (stream and b"data: [DONE]" not in data):
            raise RuntimeError(f"bad answer: {bytes(data[:400])!r}")
        return Timing(total, first_byte, first_content, chunks, last_content)

    def send_only(self, prompt: str, *, stream: bool) -> None:
        """Send a request and do not read the answer (for holding runs and queue places)."""
        body = json.dumps(
            {"model": MODEL, "stream": stream, "messages": [{"role": "user", "content": prompt}]}
        ).encode()
        self.sock.sendall(
            (
                f"POST /v1/chat/completions HTTP/1.1\r\nHost: {self.host}:{self.port}\r\n"
                f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
            ).encode()
            + body
        )


def _complete(data: bytes) -> bool:
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    if b"transfer-encoding: chunked" in head.lower():
        return rest.endswith(b"0\r\n\r\n")
    match = re.search(rb"content-length: (\d+)", head.lower())
    return match is not None and len(rest) >= int(match.group(1))


def health(srv: Server) -> dict[str, int]:
    conn = Connection(srv.host, srv.port)
    try:
        conn.sock.sendall(f"GET /healthz HTTP/1.1\r\nHost: {srv.host}\r\n\r\n".encode())
        data = b""
        for _ in range(1000):
            data += conn.sock.recv(65536)
            if _complete(data):
                break
        result: dict[str, int] = json.loads(data.partition(b"\r\n\r\n")[2])
        return result
    finally:
        conn.close()


def wait_for(predicate: Callable[[], bool], what: str, timeout: float = START_TIMEOUT) -> None:
    """Poll ``predicate`` (a benchmark may poll) until it holds; bounded in time and count."""
    deadline = time.monotonic() + timeout
    for _ in range(int(timeout / 0.01)):
        if predicate():
            return
        if time.monotonic() > deadline:
            break
        time.sleep(0.01)
    raise RuntimeError(f"timed out waiting for {what}")


# --------------------------------------------------------------------------- measurements


def pct(values: Sequence[float], q: int) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


@dataclass
class Row:
    name: str
    value: str
    baseline: str
    ratio: float | None
    target: str = ""


def ms(x: float) -> str:
    return f"{x * 1000:.1f} ms"


def latency(lab: Lab, runs: int, rows: list[Row]) -> None:
    argv_default = default_argv(lab)
    argv_server, env_server = server_argv(lab)
    env_default = {**lab.env}
    direct_default: list[float] = []
    direct_server: list[float] = []
    through: list[float] = []
    stream_first: list[float] = []
    stream_content: list[float] = []
    direct_content: list[float] = []
    with server(lab, parallel=4) as srv:
        conn = Connection(srv.host, srv.port)
        try:
            for _ in range(3):  # warm-up: caches, first-run work in CODEX_HOME
                run_direct(argv_default, env_default, lab.workdir, PROMPT)
                run_direct(argv_server, env_server, lab.workdir, PROMPT)
                conn.chat(PROMPT, stream=False)
                conn.chat(PROMPT, stream=True)
            for _ in range(runs):
                direct_default.append(
                    run_direct(argv_default, env_default, lab.workdir, PROMPT).total
                )
                direct = run_direct(argv_server, env_server, lab.workdir, PROMPT)
                direct_server.append(direct.total)
                direct_content.append(direct.first_content)
                through.append(conn.chat(PROMPT, stream=False).total)
                streamed = conn.chat(PROMPT, stream=True)
                stream_first.append(streamed.first_byte)
                stream_content.append(streamed.first_content)
        finally:
            conn.close()
    rows.extend(
        Row(
            f"non-stream p{q}: server vs `codex exec` by hand",
            ms(pct(through, q)),
            ms(pct(direct_default, q)),
            pct(through, q) / pct(direct_default, q),
            "< 1" if q == 50 else "",
        )
        for q in (50, 90)
    )
    for q in (50, 90):
        added = pct(through, q) - pct(direct_server, q)
        rows.append(
            Row(
                f"non-stream p{q}: server vs its own invocation run directly",
                ms(pct(through, q)),
                ms(pct(direct_server, q)),
                pct(through, q) / pct(direct_server, q),
                f"+{added * 1000:.1f} ms" + (" (<= +10 ms)" if q == 50 else ""),
            )
        )
    rows.append(
        Row(
            "direct: server's flags vs by hand (p50)",
            ms(pct(direct_server, 50)),
            ms(pct(direct_default, 50)),
            pct(direct_server, 50) / pct(direct_default, 50),
        )
    )
    rows.append(
        Row(
            "stream: first byte (p50) vs answer printed by `codex exec`",
            ms(pct(stream_first, 50)),
            ms(pct(direct_content, 50)),
            pct(stream_first, 50) / pct(direct_content, 50),
            f"p90 {ms(pct(stream_first, 90))} (<= 20 ms)",
        )
    )
    rows.append(
        Row(
            "stream: first content (p50) vs answer printed by `codex exec`",
            ms(pct(stream_content, 50)),
            ms(pct(direct_content, 50)),
            pct(stream_content, 50) / pct(direct_content, 50),
            f"p90 {ms(pct(stream_content, 90))}",
        )
    )


#: A reply the fake upstream streams as 20 deltas 100 ms apart.
STREAMED = "Tell a story. [[fake:chunks=20;delay_ms=100]]"
BACKENDS: dict[str, dict[str, str]] = {
    "exec": {"CODEX_BACKEND": "exec"},
    "app-server cold": {"CODEX_BACKEND": "app-server", "CODEX_WARM_SPARES": "0"},
    "app-server warm": {"CODEX_BACKEND": "app-server", "CODEX_WARM_SPARES": "1"},
}


def backends(lab: Lab, runs: int, rows: list[Row]) -> None:
    """Each backend against the tuned direct ``codex exec`` floor, interleaved: a trivial
    non-stream request (p50), time to first content of a streamed one, and a 20-delta reply."""
    argv_server, env_server = server_argv(lab)
    floor: list[float] = []
    total: dict[str, list[float]] = {name: [] for name in BACKENDS}
    content: dict[str, list[float]] = {name: [] for name in BACKENDS}
    story: dict[str, list[Timing]] = {name: [] for name in BACKENDS}
    with contextlib.ExitStack() as stack:
        conns = {
            name: Connection(srv.host, srv.port)
            for name, extra in BACKENDS.items()
            for srv in [stack.enter_context(server(lab, parallel=2, extra=extra))]
        }
        for conn in conns.values():
            stack.callback(conn.close)
            for _ in range(2):
                conn.chat(PROMPT, stream=False)
        for n in range(runs):
            floor.append(run_direct(argv_server, env_server, lab.workdir, PROMPT).total)
            for name, conn in conns.items():
                time.sleep(0.3)  # a warm spare is replaced after each request
                total[name].append(conn.chat(PROMPT, stream=False).total)
                time.sleep(0.3)
                content[name].append(conn.chat(PROMPT, stream=True).first_content)
                if n < 3:
                    story[name].append(conn.chat(STREAMED, stream=True))
    base = pct(floor, 50)
    for name in BACKENDS:
        rows.append(
            Row(
                f"{name}: trivial non-stream p50 vs direct `codex exec` floor",
                ms(pct(total[name], 50)),
                ms(base),
                pct(total[name], 50) / base,
                "<= 0.5 (warm)" if name == "app-server warm" else "",
            )
        )
        rows.append(
            Row(
                f"{name}: first content (p50, stream) vs direct floor",
                ms(pct(content[name], 50)),
                ms(base),
                pct(content[name], 50) / base,
            )
        )
        told = story[name]
        first = statistics.median(s.first_content for s in told)
        last = statistics.median(s.last_content for s in told)
        rows.append(
            Row(
                f"{name}: 20-delta reply, first chunk vs last chunk",
                ms(first),
                ms(last),
                first / last,
                f"{min(s.chunks for s in told)} chunks (>= 15, first <= 400 ms)",
            )
        )


def throughput(lab: Lab, requests: int, rows: list[Row]) -> None:
    argv_server, env_server = server_argv(lab)
    for concurrency in (1, 4, 16):
        total = max(requests, 2 * concurrency)
        with server(lab, parallel=concurrency) as srv:
            conns = [Connection(srv.host, srv.port) for _ in range(concurrency)]
            try:
                for conn in conns:
                    conn.chat(PROMPT, stream=False)  # warm-up

                def through(i: int, conns: list[Connection] = conns) -> float:
                    return conns[i % len(conns)].chat(PROMPT, stream=False).total

                server_lat, server_rate = _drive(through, total, concurrency)
            finally:
                for conn in conns:
                    conn.close()

        def direct(i: int) -> float:
            return run_direct(argv_server, env_server, lab.workdir, PROMPT).total

        direct_lat, direct_rate = _drive(direct, total, concurrency)
        rows.append(
            Row(
                f"c={concurrency}: throughput (req/s), server vs direct",
                f"{server_rate:.1f}/s",
                f"{direct_rate:.1f}/s",
                server_rate / direct_rate,
            )
        )
        rows.append(
            Row(
                f"c={concurrency}: p90 latency, server vs direct",
                ms(pct(server_lat, 90)),
                ms(pct(direct_lat, 90)),
                pct(server_lat, 90) / pct(direct_lat, 90),
            )
        )


def _drive(call: Callable[[int], float], total: int, concurrency: int) -> tuple[list[float], float]:
    """``total`` calls, ``concurrency`` at a time, each worker thread sequential."""

    def worker(w: int) -> list[float]:
        return [call(i) for i in range(w, total, concurrency)]

    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(worker, range(concurrency)))
    elapsed = time.perf_counter() - start
    latencies = [x for batch in results for x in batch]
    return latencies, len(latencies) / elapsed


def memory(lab: Lab, rows: list[Row]) -> None:
    running, queued = 4, 32
    hang = "Wait. [[fake:mode=hang;hold_s=60]]"
    with server(lab, parallel=running) as srv:
        warm = Connection(srv.host, srv.port)
        for _ in range(3):
            warm.chat(PROMPT, stream=False)
            warm.chat(PROMPT, stream=True)
        warm.close()
        lab.upstream.clear()
        idle = srv.rss_kib()
        holders = [Connection(srv.host, srv.port) for _ in range(running)]
        for conn in holders:
            conn.send_only(hang, stream=True)
        wait_for(lambda: _hanging(lab) == running, "4 running Codex waiting on the upstream")
        with_running = srv.rss_kib()
        codex_rss = statistics.mean(_rss(pid) for pid in _codex_children(srv.proc.pid))
        waiters = [Connection(srv.host, srv.port) for _ in range(queued)]
        for conn in waiters:
            conn.send_only(hang, stream=False)
        wait_for(lambda: health(srv)["queued"] == queued, f"{queued} queued requests")
        with_queued = srv.rss_kib()
        for conn in holders + waiters:
            conn.close()
    per_running = (with_running - idle) / running
    per_queued = (with_queued - with_running) / queued
    rows.append(
        Row(
            "server RSS idle vs one Codex process",
            f"{idle} KiB",
            f"{codex_rss:.0f} KiB",
            idle / codex_rss,
        )
    )
    rows.append(
        Row(
            "server RSS per running request (Codex excluded) vs one Codex",
            f"{per_running:.0f} KiB",
            f"{codex_rss:.0f} KiB",
            per_running / codex_rss,
        )
    )
    rows.append(
        Row(
            "server RSS per queued request vs one Codex",
            f"{per_queued:.1f} KiB",
            f"{codex_rss:.0f} KiB",
            per_queued / codex_rss,
        )
    )


def _hanging(lab: Lab) -> int:
    return sum(1 for r in lab.upstream.responses_requests() if r.get("mode") == "hang")


def _codex_children(pid: int) -> list[int]:
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            stat = Path(f"/proc/{name}/stat").read_text()
            exe = os.readlink(f"/proc/{name}/exe")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid and exe.endswith("/codex"):
            found.append(int(name))
    return found


def _rss(pid: int) -> int:
    match = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.MULTILINE)
    return int(match.group(1)) if match else 0


# --------------------------------------------------------------------------- main

SECTIONS: Final = ("latency", "backends", "throughput", "memory")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="latency samples per kind")
    parser.add_argument("--requests", type=int, default=48, help="requests per concurrency level")
    parser.add_argument(
        "--only",
        choices=sorted(SECTIONS),
        action="append",
        help="run only this section (repeatable); default: all of them",
    )
    args = parser.parse_args(argv)
    rows: list[Row] = []
    started = time.monotonic()
    chosen = args.only or list(SECTIONS)
    with lab() as env:
        if "latency" in chosen:
            latency(env, args.runs, rows)
        if "backends" in chosen:
            backends(env, max(5, args.runs // 2), rows)
        if "throughput" in chosen:
            throughput(env, args.requests, rows)
        if "memory" in chosen:
            memory(env, rows)
    width = max(len(r.name) for r in rows)
    print(f"{'measure':<{width}} | {'value':>12} | {'baseline':>12} | {'ratio':>6} | target / note")
    print(f"{'-' * width}-|-{'-' * 12}-|-{'-' * 12}-|-{'-' * 6}-|-{'-' * 20}")
    for r in rows:
        ratio = "" if r.ratio is None else f"{r.ratio:.3g}"
        print(f"{r.name:<{width}} | {r.value:>12} | {r.baseline:>12} | {ratio:>6} | {r.target}")
    print(
        f"\n{os.cpu_count()} CPUs; {args.runs} latency samples each, {args.requests} requests "
        f"per concurrency level; {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
