"""Fakes for the tests: settings, the model catalog, a scripted in-process backend, a tiny PNG,
and the FIFO the fake codex reports its pids on."""

from __future__ import annotations

import dataclasses
import os
import re
import struct
import sys
import zlib
from collections.abc import Awaitable, Callable
from pathlib import Path

import trio

from trio_codex.codex.models import ModelCatalog
from trio_codex.run.events import (
    CodexEvent,
    ErrorEvent,
    ItemEvent,
    MessageCompleted,
    ReasoningCompleted,
    TextDelta,
    ThreadStarted,
    ToolCallStarted,
    ToolCallWaiting,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    Usage,
)
from trio_codex.run.runner import ExitInfo, RunSpec
from trio_codex.run.tools import ToolCall
from trio_codex.settings import Settings

DIRECTIVE = re.compile(r"\[\[run:([^\]]*)\]\]")


def make_settings(tmp_path: Path, **overrides: object) -> Settings:
    """Settings for a test: private workdir and CODEX_HOME under ``tmp_path``; no warm spares
    unless asked for (``warm_spares=``), so that a test sees only the processes it starts."""
    workdir = tmp_path / "work"
    home = tmp_path / "codex-home"
    workdir.mkdir(exist_ok=True)
    home.mkdir(exist_ok=True)
    values: dict[str, object] = {
        "workdir": workdir,
        "codex_home": home,
        "codex_path": Path(sys.executable),
        "kill_grace": 0.5,
        "warm_spares": 0,
    }
    values.update(overrides)
    return Settings(**values)  # type: ignore[arg-type]


TEST_CATALOG = ModelCatalog.from_slugs(
    {"gpt-test": ("low", "medium", "high"), "org/gpt-test-2": ("low",)}, created=1_700_000_000
)


@dataclasses.dataclass
class RunRecord:
    spec: RunSpec
    started_at: float
    ended_at: float | None = None
    cancelled: bool = False


def progress_events(*, camel: bool = False) -> list[CodexEvent]:
    """A command (``echo hi``, exit 0) and a file change (``add notes.txt``), started and
    completed, with the item fields of ``codex exec --json`` or (``camel``) ``codex
    app-server``."""
    if camel:
        command = {"id": "call_1", "type": "commandExecution", "command": "/bin/bash -lc 'echo hi'"}
        change = {
            "id": "call_2",
            "type": "fileChange",
            "changes": [{"path": "notes.txt", "kind": {"type": "add"}}],
        }
        return [
            ItemEvent(
                "started",
                "command_execution",
                {**command, "status": "inProgress", "exitCode": None},
            ),
            ItemEvent(
                "completed",
                "command_execution",
                {**command, "status": "completed", "exitCode": 0, "aggregatedOutput": "hi\n"},
            ),
            ItemEvent("started", "file_change", {**change, "status": "inProgress"}),
            ItemEvent("completed", "file_change", {**change, "status": "completed"}),
        ]
    command = {"id": "item_2", "type": "command_execution", "command": "/bin/bash -lc 'echo hi'"}
    change = {
        "id": "item_3",
        "type": "file_change",
        "changes": [{"path": "notes.txt", "kind": "add"}],
    }
    return [
        ItemEvent(
            "started", "command_execution", {**command, "status": "in_progress", "exit_code": None}
        ),
        ItemEvent(
            "completed",
            "command_execution",
            {**command, "status": "completed", "exit_code": 0, "aggregated_output": "hi\n"},
        ),
        ItemEvent("started", "file_change", {**change, "status": "in_progress"}),
        ItemEvent("completed", "file_change", {**change, "status": "completed"}),
    ]


class ScriptedBackend:
    """An in-process backend driven by a ``[[run:key=value;...]]`` directive in the prompt.

    Keys: ``sleep`` (virtual seconds before answering), ``linger`` (seconds between
    ``turn.completed`` and exit), ``reply``, ``fail`` (a failure
    message), ``crash`` (raise inside the backend), ``chunks`` (messages). Records every run
    so tests can assert exact virtual times.

    More keys: ``silent`` (virtual seconds before the first event), ``thread`` (the thread
    id; default the resumed thread, else ``thread-1``), ``reasoning`` (a reasoning item
    first), ``replies`` (messages separated by ``|``, instead of ``chunks`` x ``reply``),
    ``deltas`` (stream each message as that many ``TextDelta`` pieces before it completes),
    ``progress`` (before the messages, a command that runs ``echo hi`` and a file change adding
    ``notes.txt``, as ``ItemEvent`` items with the fields of ``exec`` (``progress=exec``) or
    ``app-server`` (``progress=app``)),
    ``usage`` (``input,cached,output,reasoning`` of ``turn.completed``) and ``fail_late``
    (fail with this message after the messages).

    ``call`` (client tool names, comma-separated): after the messages, the model calls each
    (``ToolCallStarted``, ids ``call_<n>``, arguments ``{"n":<n>}``), then the run waits on
    ``spec.tool_results`` for each in order (``ToolCallWaiting`` before each wait) and answers
    ``tool results: <text> | <text>``.
    """

    def __init__(self) -> None:
        self.runs: list[RunRecord] = []
        self.running = 0
        self.max_running = 0

    async def run(self, spec: RunSpec, emit: Callable[[CodexEvent], Awaitable[None]]) -> ExitInfo:
        record = RunRecord(spec, trio.current_time())
        self.runs.append(record)
        self.running += 1
        self.max_running = max(self.max_running, self.running)
        found = DIRECTIVE.findall(spec.prompt)
        opts = dict(p.split("=", 1) for p in found[-1].split(";") if "=" in p) if found else {}
        try:
            if "silent" in opts:
                await trio.sleep(float(opts["silent"]))
            await emit(ThreadStarted(opts.get("thread", spec.resume_thread_id or "thread-1")))
            await emit(TurnStarted())
            await trio.sleep(float(opts.get("sleep", 0)))
            if "crash" in opts:
                raise RuntimeError("backend crashed")
            if "fail" in opts:
                await emit(ErrorEvent(opts["fail"]))
                await emit(TurnFailed(opts["fail"]))
                return ExitInfo(1, "")
            if "reasoning" in opts:
                await emit(ReasoningCompleted("item_r", opts["reasoning"]))
            if "progress" in opts:
                for event in progress_events(camel=opts["progress"] == "app"):
                    await emit(event)
            replies = (
                opts["replies"].split("|")
                if "replies" in opts
                else [opts.get("reply", "hello")] * int(opts.get("chunks", 1))
            )
            if "call" in opts and not {"reply", "replies"} & opts.keys():
                replies = []  # the model only calls tools
            for n, reply in enumerate(replies):
                pieces = int(opts.get("deltas", 0))
                if pieces:
                    size = max(1, -(-len(reply) // pieces))
                    for start in range(0, len(reply), size):
                        await emit(TextDelta(f"item_{n}", reply[start : start + size]))
                await emit(MessageCompleted(f"item_{n}", reply))
            if "call" in opts:
                await self._call_tools(spec, emit, opts["call"].split(","))
            if "fail_late" in opts:
                await emit(ErrorEvent(opts["fail_late"]))
                await emit(TurnFailed(opts["fail_late"]))
                return ExitInfo(1, "")
            counts = [int(c) for c in opts.get("usage", "10,2,5,1").split(",")]
            await emit(TurnCompleted(Usage(*counts)))
            await trio.sleep(float(opts.get("linger", 0)))  # Codex still exiting
            await emit(ItemEvent("completed", "error", {"message": "printed after the turn"}))
            return ExitInfo(0, "")
        except trio.Cancelled:
            record.cancelled = True
            raise
        finally:
            self.running -= 1
            record.ended_at = trio.current_time()

    async def _call_tools(
        self, spec: RunSpec, emit: Callable[[CodexEvent], Awaitable[None]], names: list[str]
    ) -> None:
        calls = [ToolCall(f"call_{n}", name, f'{{"n":{n}}}') for n, name in enumerate(names, 1)]
        for call in calls:
            await emit(ToolCallStarted(call))
        if spec.tool_results is None:
            raise RuntimeError("a run with tool calls has no tool results bridge")
        texts = []
        for call in calls:
            await emit(ToolCallWaiting(call.call_id))
            texts.append((await spec.tool_results.get(call.call_id)).text)
        await emit(MessageCompleted("item_tools", "tool results: " + " | ".join(texts)))


# --------------------------------------------------------------------------- images


def tiny_png(pixel: bytes = b"\xff\x00\x00") -> bytes:
    """A valid 2x2 RGB PNG whose pixels are all ``pixel`` (default red), built with the stdlib."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + pixel * 2 for _ in range(2))
    header = struct.pack(">IIBBBBB", 2, 2, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


# --------------------------------------------------------------------------- processes


def make_fifo(tmp_path: Path, name: str = "notify") -> Path:
    path = tmp_path / name
    os.mkfifo(path)
    return path


async def read_notify(fifo: Path) -> list[int]:
    """Wait (without polling) for the fake codex's ``pids ...`` line on ``fifo``."""
    fd = os.open(fifo, os.O_RDWR | os.O_NONBLOCK)  # RDWR: never EOF while we hold it
    stream = trio.lowlevel.FdStream(fd)
    try:
        buf = b""
        while b"\n" not in buf:
            buf += await stream.receive_some(4096)
    finally:
        await stream.aclose()
    words = buf.split(b"\n", 1)[0].decode().split()
    assert words[0] == "pids"
    return [int(w) for w in words[1:]]
