"""Ask a Codex binary about itself, for ``trio-codex doctor``: its version, its login, an
``app-server`` ``initialize`` handshake, and one real ``codex exec`` run.

Guarantees: every probe is bounded by its ``timeout`` and never raises for a Codex that fails
(spawn errors and time-outs become a ``Probe`` with ``error`` set); each child runs in its own
process group, which is dead when the probe returns, cancellation included
(``process.open_process_group``). Nothing here decides what a result means: ``doctor`` does.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Mapping, Sequence
from contextlib import aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

import trio

from ..errors import ServiceError
from ..run.events import CodexEvent, Transcript
from ..run.runner import RunSpec
from ..settings import Settings
from . import process
from .backends import make_backend

#: What a probe keeps of each stream.
OUTPUT_CAP: Final = 64 * 1024
#: The ``initialize`` request the doctor sends (APP_SERVER.md section 1.3).
INITIALIZE: Final = {
    "id": 0,
    "method": "initialize",
    "params": {
        "clientInfo": {"name": "trio_codex_doctor", "title": None, "version": "0"},
        "capabilities": None,
    },
}
#: The prompt of the ``--run`` test: one short word back.
TEST_PROMPT: Final = "Reply with the single word: ok"


@dataclass(frozen=True)
class Probe:
    """What one probe saw. ``error`` is set when the child could not run or ran out of time."""

    returncode: int | None = None
    stdout: str = ""
    stderr: str = ""
    seconds: float = 0.0
    error: str | None = None
    #: The JSON answer of ``initialize`` (app-server probes only).
    answer: dict[str, object] | None = None


@dataclass
class ExecProbe:
    """What the ``--run`` test produced: the folded events, the exit, the time taken."""

    transcript: Transcript = field(default_factory=Transcript)
    exit_code: int | None = None
    stderr: str = ""
    seconds: float = 0.0
    error: str | None = None


async def run_command(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float,  # noqa: ASYNC109 - a time-out is a result here, not an exception
) -> Probe:
    """Run ``argv`` with empty stdin; its output, exit status and time, within ``timeout``."""
    start = time.monotonic()
    out, err = bytearray(), bytearray()
    returncode: int | None = None
    try:
        with trio.move_on_after(timeout) as scope:
            async with process.open_process_group(argv, env=env, cwd=cwd, grace=0.5) as proc:
                await _close(proc.stdin)
                async with trio.open_nursery() as nursery:
                    nursery.start_soon(_drain, proc.stdout, out)
                    nursery.start_soon(_drain, proc.stderr, err)
                    returncode = await proc.wait()
    except OSError as exc:
        return Probe(error=f"cannot run {argv[0]}: {exc}", seconds=time.monotonic() - start)
    elapsed = time.monotonic() - start
    error = f"no answer within {timeout:g} s" if scope.cancelled_caught else None
    return Probe(returncode, _text(out), _text(err), elapsed, error)


async def app_server_handshake(
    binary: Path,
    *,
    env: Mapping[str, str],
    cwd: Path,
    timeout: float = 10.0,  # noqa: ASYNC109 - a time-out is a result here
) -> Probe:
    """Spawn ``codex app-server``, send ``initialize``, wait for its answer (``answer``), then
    close stdin and give the server a moment to exit by itself."""
    start = time.monotonic()
    err = bytearray()
    answer: dict[str, object] | None = None
    returncode: int | None = None
    try:
        with trio.move_on_after(timeout) as scope:
            argv = [os.fspath(binary), "app-server"]
            async with (
                process.open_process_group(argv, env=env, cwd=cwd, grace=0.5) as proc,
                trio.open_nursery() as nursery,
            ):
                nursery.start_soon(_drain, proc.stderr, err)
                if proc.stdin is not None:
                    with contextlib.suppress(trio.BrokenResourceError):
                        await proc.stdin.send_all(json.dumps(INITIALIZE).encode() + b"\n")
                answer = await _answer_to(proc.stdout, INITIALIZE["id"])
                await _close(proc.stdin)
                with trio.move_on_after(2.0):
                    returncode = await proc.wait()
                nursery.cancel_scope.cancel()
    except OSError as exc:
        return Probe(error=f"cannot run {binary}: {exc}", seconds=time.monotonic() - start)
    elapsed = time.monotonic() - start
    error = None
    if scope.cancelled_caught:
        error = f"no answer to initialize within {timeout:g} s"
    elif answer is None:
        error = "app-server closed its output without answering initialize"
    return Probe(returncode, "", _text(err), elapsed, error, answer)


async def exec_once(
    settings: Settings,
    *,
    environ: Mapping[str, str],
    extra_env_names: tuple[str, ...],
    timeout: float = 120.0,  # noqa: ASYNC109 - a time-out is a result here
    prompt: str = TEST_PROMPT,
) -> ExecProbe:
    """One run of ``prompt``, exactly as the server runs a request (the backend of
    ``CODEX_BACKEND``, the same argv and environment; no warm spare), read-only and
    ephemeral."""
    result = ExecProbe()
    backend = make_backend(settings, environ=environ, extra_env_names=extra_env_names)

    async def emit(event: CodexEvent) -> None:
        result.transcript.feed(event)

    start = time.monotonic()
    try:
        with trio.move_on_after(timeout) as scope:
            info = await backend.run(RunSpec(prompt=prompt), emit)
            result.exit_code, result.stderr = info.exit_code, info.stderr
    except OSError as exc:
        result.error = f"cannot run {backend.binary}: {exc}"
    except ServiceError as exc:  # app-server: the spawn failed (503 codex_unavailable)
        result.error = exc.message
    result.seconds = time.monotonic() - start
    if scope.cancelled_caught:
        result.error = f"no answer within {timeout:g} s"
    return result


async def _answer_to(
    stream: trio.abc.ReceiveStream | None, request_id: object
) -> dict[str, object] | None:
    """The first JSON line whose ``id`` is ``request_id`` (server notifications are skipped)."""
    if stream is None:
        return None
    async with aclosing(process.read_lines(stream, max_line=OUTPUT_CAP)) as lines:
        async for line in lines:
            try:
                message = json.loads(line)
            except ValueError:
                continue
            if (
                isinstance(message, dict)
                and message.get("id") == request_id
                and "method" not in message
            ):
                return message
    return None


async def _drain(stream: trio.abc.ReceiveStream | None, sink: bytearray) -> None:
    if stream is not None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await process.drain_capped(stream, sink, OUTPUT_CAP)


async def _close(stream: trio.abc.SendStream | None) -> None:
    if stream is not None:
        with contextlib.suppress(trio.BrokenResourceError, trio.ClosedResourceError):
            await stream.aclose()


def _text(data: bytearray) -> str:
    return data.decode("utf-8", "replace")
