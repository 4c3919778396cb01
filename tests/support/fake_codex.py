#!/usr/bin/env python3
"""A fake ``codex`` executable for the tests: speaks ``codex exec --json``, ``debug models`` and
``--version`` (``codex-cli 0.169.0-fake``); ``codex [flags] app-server`` runs the fake app-server,
``fake_app_server.py`` beside this file (in this process: same pid, same argv), which knows the
same modes. So one test can run the same directives on both backends.

Its behaviour is picked by a directive in the prompt it reads on stdin (the only channel that
reaches it unchanged, since the server gives Codex an allowlisted environment)::

    [[codex:mode=hang;notify=/path/to/fifo]]

Modes (default ``ok``):

``ok``            thread.started, turn.started, one agent_message (``reply``, default
                  ``echo: <prompt>``), turn.completed with usage; exit 0.
``messages``      ``count`` agent messages ``part-<n>``, ``gap_ms`` apart.
``reasoning``     a reasoning item, then the answer.
``progress``      a command_execution (started, completed with exit 0) and a file_change
                  (started, completed), as Codex CLI 0.169.0 prints them, then the answer.
``fail``          error + turn.failed with ``message`` (default a 401 text); exit 1.
``exit``          print nothing after turn.started and exit with ``code``.
``hang``          after turn.started, block for ever.
``hang_ignore_term``  ignore SIGTERM, then block for ever.
``grandchild``    start a grandchild (same process group) that ignores SIGTERM, then block.
``close_stdout``  close stdout and keep running.
``orphan_stdout`` start a grandchild that keeps stdout open, then exit 0 after answering.
``garbage``       lines of junk, half a JSON object, an unknown event, then answer.
``bigline``       a 10 MB line, then answer.
``flood``         agent messages of 64 KiB, for ever (for clients that stop reading).
``env``           the answer is the JSON of its environment.
``argv``          the answer is the JSON of its argv.
``stdin_echo``    the answer is the whole stdin.
``slow``          the answer after ``delay_ms``.
``gate``          notify, then wait until a line can be read from the FIFO ``gate=PATH`` (the test
                  opens it to let the run go on), then answer (``reply``).
``partial_tail``  answer, then half a JSON object without a newline, then exit 0.
``stream_gate``   ``count`` agent messages (default 3), then notify and wait on ``gate`` like
                  ``gate``, then ``count`` more and turn.completed.

``notify=PATH``: once set up, write ``pids <pid> [<grandchild pid>]`` + newline to PATH (a FIFO
the test reads, so it waits for an event instead of sleeping).
"""

from __future__ import annotations

import json
import os
import re
import runpy
import signal
import subprocess
import sys
import time
from pathlib import Path

DIRECTIVE = re.compile(r"\[\[codex:([^\]]*)\]\]")

MODELS = {
    "models": [
        {
            "slug": "gpt-test",
            "visibility": "list",
            "supported_reasoning_levels": [
                {"effort": "low"},
                {"effort": "medium"},
                {"effort": "high"},
            ],
        },
        {
            "slug": "org/gpt-test-2",
            "visibility": "list",
            "supported_reasoning_levels": [{"effort": "low"}],
        },
        {"slug": "gpt-hidden", "visibility": "hide", "supported_reasoning_levels": []},
    ]
}


def emit(obj: object) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


def options(prompt: str) -> dict[str, str]:
    found = DIRECTIVE.findall(prompt)
    if not found:
        return {}
    pairs = [p for p in found[-1].split(";") if "=" in p]
    return dict(p.split("=", 1) for p in pairs)


def notify(opts: dict[str, str], *pids: int) -> None:
    path = opts.get("notify")
    if path:
        with open(path, "w") as f:
            f.write("pids " + " ".join(str(p) for p in pids) + "\n")


def wait_gate(opts: dict[str, str]) -> None:
    """Block until a line arrives on the FIFO named by ``gate`` (no gate: return at once)."""
    path = opts.get("gate")
    if path:
        with open(path) as f:
            f.readline()


def block() -> None:
    while True:
        time.sleep(3600)


def spawn_term_ignoring_child(stdout: int | None = None) -> subprocess.Popen[bytes]:
    code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(3600)"
    return subprocess.Popen([sys.executable, "-c", code], stdout=stdout, stdin=subprocess.DEVNULL)


def answer(text: str, opts: dict[str, str]) -> None:
    emit(
        {"type": "item.completed", "item": {"id": "item_1", "type": "agent_message", "text": text}}
    )
    emit(
        {
            "type": "turn.completed",
            "usage": {
                "input_tokens": int(opts.get("input_tokens", 11)),
                "cached_input_tokens": int(opts.get("cached_tokens", 3)),
                "output_tokens": int(opts.get("output_tokens", 7)),
                "reasoning_output_tokens": int(opts.get("reasoning_tokens", 2)),
            },
        }
    )


def main() -> int:
    args = sys.argv[1:]
    if args == ["--version"]:  # the server checks CODEX_PATH with it at startup
        print("codex-cli 0.169.0-fake")
        return 0
    if args[:2] == ["debug", "models"]:
        print(json.dumps(MODELS))
        return 0
    if "app-server" in args:
        runpy.run_path(str(Path(__file__).with_name("fake_app_server.py")), run_name="__main__")
        return 0  # not reached: it exits
    if not args or args[0] != "exec":
        print(f"fake codex: unsupported arguments {args}", file=sys.stderr)
        return 2
    print("Reading prompt from stdin...", file=sys.stderr)
    prompt = sys.stdin.read()
    opts = options(prompt)
    mode = opts.get("mode", "ok")
    emit({"type": "thread.started", "thread_id": "0199a213-81c0-7800-8aa1-bbab2a035a53"})
    emit({"type": "turn.started"})
    if mode == "ok":
        notify(opts, os.getpid())
        answer(opts.get("reply", f"echo: {prompt}"), opts)
    elif mode == "messages":
        for n in range(int(opts.get("count", 3))):
            emit(
                {
                    "type": "item.completed",
                    "item": {"id": f"item_{n}", "type": "agent_message", "text": f"part-{n}"},
                }
            )
            time.sleep(int(opts.get("gap_ms", 0)) / 1000)
        emit({"type": "turn.completed", "usage": {"input_tokens": 5, "output_tokens": 5}})
    elif mode == "reasoning":
        emit(
            {
                "type": "item.completed",
                "item": {"id": "item_0", "type": "reasoning", "text": "**Thinking** about it"},
            }
        )
        answer(opts.get("reply", "reasoned answer"), opts)
    elif mode == "progress":
        command = {
            "id": "item_2",
            "type": "command_execution",
            "command": "/bin/bash -lc 'echo hi'",
        }
        emit(
            {
                "type": "item.started",
                "item": {
                    **command,
                    "aggregated_output": "",
                    "exit_code": None,
                    "status": "in_progress",
                },
            }
        )
        emit(
            {
                "type": "item.completed",
                "item": {
                    **command,
                    "aggregated_output": "hi\n",
                    "exit_code": 0,
                    "status": "completed",
                },
            }
        )
        change = {
            "id": "item_3",
            "type": "file_change",
            "changes": [{"path": "notes.txt", "kind": "add"}],
        }
        emit({"type": "item.started", "item": {**change, "status": "in_progress"}})
        emit({"type": "item.completed", "item": {**change, "status": "completed"}})
        answer(opts.get("reply", "done"), opts)
    elif mode == "fail":
        message = opts.get(
            "message",
            "unexpected status 401 Unauthorized: Incorrect API key provided: x., url: http://127.0.0.1:1/v1/responses",
        )
        emit({"type": "error", "message": message})
        emit({"type": "turn.failed", "error": {"message": message}})
        return 1
    elif mode == "exit":
        return int(opts.get("code", 3))
    elif mode == "hang":
        notify(opts, os.getpid())
        block()
    elif mode == "hang_ignore_term":
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        notify(opts, os.getpid())
        block()
    elif mode == "grandchild":
        child = spawn_term_ignoring_child()
        notify(opts, os.getpid(), child.pid)
        block()
    elif mode == "close_stdout":
        sys.stdout.flush()
        os.close(1)
        notify(opts, os.getpid())
        block()
    elif mode == "orphan_stdout":
        child = spawn_term_ignoring_child(stdout=None)  # inherits our stdout
        notify(opts, os.getpid(), child.pid)
        answer("done", opts)
        return 0
    elif mode == "garbage":
        sys.stdout.write('not json at all\n\n{"type": "item.comp\n')
        emit({"type": "some.future.event", "x": 1})
        emit([1, 2, 3])
        answer("survived", opts)
    elif mode == "bigline":
        sys.stdout.write("x" * (10 * 1024 * 1024) + "\n")
        answer("after big line", opts)
    elif mode == "flood":
        notify(opts, os.getpid())
        n = 0
        while True:
            n += 1
            emit(
                {
                    "type": "item.completed",
                    "item": {"id": f"item_{n}", "type": "agent_message", "text": "y" * 65536},
                }
            )
    elif mode == "env":
        answer(json.dumps(dict(os.environ)), opts)
    elif mode == "argv":
        answer(json.dumps(sys.argv), opts)
    elif mode == "stdin_echo":
        answer(prompt, opts)
    elif mode == "slow":
        time.sleep(int(opts.get("delay_ms", 500)) / 1000)
        answer(opts.get("reply", "slow answer"), opts)
    elif mode == "gate":
        notify(opts, os.getpid())
        wait_gate(opts)
        answer(opts.get("reply", "released"), opts)
    elif mode == "partial_tail":
        answer(opts.get("reply", "before the tail"), opts)
        sys.stdout.write('{"type": "item.completed", "item": {"id": "it')
        sys.stdout.flush()
    elif mode == "stream_gate":
        count = int(opts.get("count", 3))
        for n in range(2 * count):
            if n == count:
                notify(opts, os.getpid())
                wait_gate(opts)
            emit(
                {
                    "type": "item.completed",
                    "item": {"id": f"item_{n}", "type": "agent_message", "text": f"part-{n}"},
                }
            )
        emit({"type": "turn.completed", "usage": {"input_tokens": 5, "output_tokens": 5}})
    else:
        print(f"fake codex: unknown mode {mode}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
