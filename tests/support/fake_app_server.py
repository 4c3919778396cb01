#!/usr/bin/env python3
"""A fake ``codex`` that speaks ``codex app-server`` (JSON-RPC over stdio lines) for the tests.

Stdlib only. Run as ``codex [global flags] app-server``; it answers ``initialize``,
``thread/start``, ``thread/resume`` and ``turn/start`` like Codex 0.169.0 (APP_SERVER.md), and
exits 0 when its stdin closes, like the real one. Also ``codex --version`` and
``codex debug models`` (the catalog).

Two channels pick its behaviour (the server gives Codex an allowlisted environment, so neither is
an environment variable):

* the **process** directive: the file ``$CODEX_HOME/fake-app-server``, holding
  ``key=value;key=value`` (read at start, before any prompt exists);
* the **turn** directive: ``[[codex:key=value;...]]`` in the prompt of ``turn/start``.

Process keys:

``init=silent``   never answer ``initialize`` (reads and ignores everything).
``init=garbage``  answer ``initialize`` with a line that is not JSON.
``init=exit``     exit with ``code`` (default 4) before answering, after ``Error: ...`` on stderr.
``config=invalid``  send the ``configWarning`` "Invalid configuration; using defaults." after
                  ``initialize`` (what app-server does when ``config.toml`` does not parse).
``notify=PATH``   as the turn key, but at start.
``version=X.Y.Z`` what ``codex --version`` prints (default ``codex-cli 0.169.0``).

Turn modes (``mode=``, default ``ok``):

``ok``            the reply (``reply``, default ``echo: <prompt>``) as ``deltas`` deltas (default
                  3), ``delay_ms`` apart, then ``item/completed``, usage, ``turn/completed``.
``reasoning``     a reasoning item (summary ``summary``) first, then ``ok``.
``retry``         an ``error`` with ``willRetry: true`` ("Reconnecting... 1/2"), then ``ok``.
``fail``          ``deltas`` deltas, ``error`` + ``turn/completed`` ``failed`` with ``message``
                  (default: the 401 text the fake exec codex fails with).
``approval``      ask ``item/commandExecution/requestApproval`` (server request id 0, the same
                  number as the client's first request) and then ``item/tool/call``; the reply
                  is ``decision=<the answer's decision> tool=<the answer's error code>``.
``garbage``       ``deltas`` deltas, then a line that is not JSON, then block.
``die``           ``deltas`` deltas, then exit at once with ``code`` (default 3).
``hang``          after ``turn/started``: notify and block; ``ignore_term=1`` ignores SIGTERM
                  first, ``grandchild=1`` starts a grandchild (same group) that ignores SIGTERM.
``stream_gate``   ``count`` deltas (default 3), notify, wait for a line on the FIFO ``gate``,
                  ``count`` more deltas, complete.
``params``        the reply is the JSON of ``{"argv", "env", "pid", "requests"}``: every request
                  and notification received so far, in order.
``thread``        the reply is ``thread=<id> resumed=<true|false>``.

The modes of the fake ``codex exec`` (``tests/support/fake_codex.py``), with the same effect where
the protocol allows, so that one test can run on both backends:

``messages``      ``count`` agent messages ``part-<n>`` (default 3), ``gap_ms`` apart; usage 5+5.
``exit``          exit with ``code`` (default 3) right after ``turn/started``.
``hang_ignore_term`` / ``grandchild``  ``hang`` with ``ignore_term=1`` / ``grandchild=1``.
``close_stdout``  close stdout after ``turn/started``, notify, and keep running.
``orphan_stdout`` start a grandchild that keeps stdout open, notify, answer ``done``; exit 0 when
                  stdin closes, as always.
``bigline``       a 10 MB notification (of a method trio_codex does not know), then the answer
                  ``after big line`` (a 10 MB line that is not JSON breaks the protocol: see
                  ``garbage``).
``flood``         notify, then deltas of 64 KiB for ever.
``env`` / ``argv``  the answer is the JSON of its environment / argv.
``stdin_echo``    the answer is the prompt (what reached it on stdin).
``slow``          the answer (default ``slow answer``) after ``delay_ms`` (default 500).
``gate``          notify, wait for a line on the FIFO ``gate``, answer (default ``released``).
``tools``         call the thread's ``dynamicTools`` named in ``call`` (comma-separated; default
                  the first one) in one model response, like Codex 0.169.0 (APP_SERVER.md 7.3):
                  every ``item/started`` ``dynamicToolCall`` (id ``call_<n>``, arguments
                  ``{"n": <n>}``) first, then one ``item/tool/call`` at a time, each after the
                  previous answer; then the reply is ``tool results: <text> | <text>`` (the
                  answers' ``inputText`` texts, ``error <code>`` for an error answer).

``thread/start`` with ``dynamicTools`` fails with -32600 unless ``initialize`` asked for
``capabilities.experimentalApi``, as app-server does.

Usage: ``usage=input,cached,output,reasoning`` (default ``11,3,7,2``), sent as ``usage_parts``
(default 1) ``thread/tokenUsage/updated`` notifications whose ``last`` add up to it. A resumed
thread first gets the replayed usage of an older turn (``turnId: "turn-before"``, total
``100,0,10,0``), and its totals include it.

``notify=PATH``: once set up, write ``pids <pid> [<grandchild pid>]`` + newline to PATH.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid

DIRECTIVE = re.compile(r"\[\[codex:([^\]]*)\]\]")
FAIL_401 = (
    "unexpected status 401 Unauthorized: Incorrect API key provided: x., "
    "url: http://127.0.0.1:1/v1/responses"
)
PREVIOUS_TOTAL = (100, 0, 10, 0)
MODELS = {
    "models": [
        {
            "slug": "gpt-test",
            "visibility": "list",
            "supported_reasoning_levels": [{"effort": "low"}, {"effort": "high"}],
        }
    ]
}


def write_line(raw: str) -> None:
    sys.stdout.write(raw + "\n")
    sys.stdout.flush()


def send(obj: object) -> None:
    write_line(json.dumps(obj))


def notification(method: str, **params: object) -> None:
    send({"method": method, "params": params, "emittedAtMs": int(time.time() * 1000)})


def pairs(text: str) -> dict[str, str]:
    return dict(p.strip().split("=", 1) for p in text.split(";") if "=" in p)


def turn_options(prompt: str) -> dict[str, str]:
    found = DIRECTIVE.findall(prompt)
    return pairs(found[-1]) if found else {}


def process_options() -> dict[str, str]:
    path = os.path.join(os.environ.get("CODEX_HOME", "/nonexistent"), "fake-app-server")
    try:
        with open(path) as f:
            return pairs(f.read())
    except FileNotFoundError:
        return {}


def notify(opts: dict[str, str], *pids: int) -> None:
    path = opts.get("notify")
    if path:
        with open(path, "w") as f:
            f.write("pids " + " ".join(str(p) for p in pids) + "\n")


def block() -> None:
    while True:
        time.sleep(3600)


def breakdown(counts: tuple[int, ...]) -> dict[str, int]:
    inp, cached, out, reasoning = counts
    return {
        "totalTokens": inp + out,
        "inputTokens": inp,
        "cachedInputTokens": cached,
        "cacheWriteInputTokens": 0,
        "outputTokens": out,
        "reasoningOutputTokens": reasoning,
    }


class Server:
    def __init__(self, argv: list[str]) -> None:
        self.argv = argv
        self.opts = process_options()
        self.received: list[dict[str, object]] = []
        self.threads: dict[str, bool] = {}  # thread id -> resumed
        self.tools: dict[str, list[str]] = {}  # thread id -> dynamic tool names
        self.experimental = False
        self.turns = 0

    def read(self) -> dict[str, object] | None:
        line = sys.stdin.readline()
        if not line:
            return None
        message: dict[str, object] = json.loads(line)
        self.received.append(message)
        return message

    def main(self) -> int:
        notify(self.opts, os.getpid())
        print("WARNING: proceeding, even though we could not create PATH aliases", file=sys.stderr)
        while (message := self.read()) is not None:
            method, rid = message.get("method"), message.get("id")
            params = message.get("params") or {}
            assert isinstance(params, dict)
            if method == "initialize":
                caps = params.get("capabilities") or {}
                self.experimental = isinstance(caps, dict) and caps.get("experimentalApi") is True
                self.initialize(rid)
            elif method == "initialized":
                pass
            elif method in ("thread/start", "thread/resume"):
                self.thread(rid, method, params)
            elif method == "turn/start":
                self.turn(rid, params)
            elif rid is not None and method is not None:
                send({"id": rid, "error": {"code": -32600, "message": f"unknown variant {method}"}})
        return 0

    def initialize(self, rid: object) -> None:
        init = self.opts.get("init")
        if init == "silent":
            return
        if init == "garbage":
            write_line('{"id": 0, "result": {"userAgent": ')
            return
        if init == "exit":
            print("Error: fake app-server gave up before initialize", file=sys.stderr)
            sys.stderr.flush()
            os._exit(int(self.opts.get("code", 4)))
        send({"id": rid, "result": {"userAgent": "trio_codex/0.169.0 (fake)"}})
        if self.opts.get("config") == "invalid":
            notification(
                "configWarning",
                summary="Invalid configuration; using defaults.",
                details="config.toml:1:9: string values must be quoted",
            )
        notification("configWarning", summary="Codex could not find bubblewrap on PATH.")

    def thread(self, rid: object, method: str, params: dict[str, object]) -> None:
        resumed = method == "thread/resume"
        tools = params.get("dynamicTools")
        if tools is not None and not self.experimental:
            message = "thread/start.dynamicTools requires experimentalApi capability"
            send({"id": rid, "error": {"code": -32600, "message": message}})
            return
        tid = str(params["threadId"]) if resumed else str(uuid.uuid4())
        self.threads[tid] = resumed
        if isinstance(tools, list):
            self.tools[tid] = [str(t["name"]) for t in tools if isinstance(t, dict)]
        send({"id": rid, "result": {"thread": {"id": tid, "turns": []}, "model": "fake"}})
        if resumed:
            notification(
                "thread/tokenUsage/updated",
                threadId=tid,
                turnId="turn-before",
                tokenUsage={
                    "total": breakdown(PREVIOUS_TOTAL),
                    "last": breakdown(PREVIOUS_TOTAL),
                },
            )

    def turn(self, rid: object, params: dict[str, object]) -> None:
        tid = str(params["threadId"])
        items = params.get("input")
        assert isinstance(items, list)
        prompt = "".join(str(i.get("text", "")) for i in items if i.get("type") == "text")
        opts = turn_options(prompt)
        self.turns += 1
        turn_id = f"turn-{self.turns}"
        send({"id": rid, "result": {"turn": {"id": turn_id, "status": "inProgress"}}})
        notification("turn/started", threadId=tid, turn={"id": turn_id, "status": "inProgress"})
        notification(
            "item/started",
            threadId=tid,
            turnId=turn_id,
            item={"type": "userMessage", "id": "user-1", "content": items},
        )
        Turn(self, tid, turn_id, prompt, opts).run()


class Turn:
    def __init__(
        self, server: Server, tid: str, turn_id: str, prompt: str, opts: dict[str, str]
    ) -> None:
        self.server = server
        self.tid = tid
        self.turn_id = turn_id
        self.prompt = prompt
        self.opts = opts
        self.msg_id = "msg_1"

    def note(self, method: str, **params: object) -> None:
        notification(method, threadId=self.tid, turnId=self.turn_id, **params)

    def deltas(self, text: str, count: int) -> None:
        size = max(1, -(-len(text) // max(count, 1)))
        delay = int(self.opts.get("delay_ms", 0)) / 1000
        for n, start in enumerate(range(0, len(text), size)):
            if n and delay:
                time.sleep(delay)
            self.note(
                "item/agentMessage/delta", itemId=self.msg_id, delta=text[start : start + size]
            )

    def completed(self, status: str, error: dict[str, object] | None = None) -> None:
        notification(
            "turn/completed",
            threadId=self.tid,
            turn={"id": self.turn_id, "items": [], "status": status, "error": error},
        )

    def usage(self) -> None:
        counts = tuple(int(c) for c in self.opts.get("usage", "11,3,7,2").split(","))
        parts = int(self.opts.get("usage_parts", 1))
        resumed = self.server.threads.get(self.tid, False)
        total = list(PREVIOUS_TOTAL) if resumed else [0, 0, 0, 0]
        for n in range(parts):
            share = tuple(c // parts + (c % parts if n == parts - 1 else 0) for c in counts)
            total = [t + s for t, s in zip(total, share, strict=True)]
            self.note(
                "thread/tokenUsage/updated",
                tokenUsage={"total": breakdown(tuple(total)), "last": breakdown(share)},
            )

    def answer(self, text: str) -> None:
        self.note("item/started", item={"type": "agentMessage", "id": self.msg_id, "text": ""})
        self.deltas(text, int(self.opts.get("deltas", 3)))
        self.note("item/completed", item={"type": "agentMessage", "id": self.msg_id, "text": text})
        self.usage()
        self.completed("completed")

    def ask(self, request_id: int, method: str, **params: object) -> dict[str, object]:
        """Send a server request and read stdin until its answer arrives."""
        send({"id": request_id, "method": method, "params": params})
        while (message := self.server.read()) is not None:
            if message.get("id") == request_id and "method" not in message:
                return message
        sys.exit(0)

    def call_tools(self) -> None:
        registered = self.server.tools.get(self.tid, [])
        names = [n for n in self.opts.get("call", "").split(",") if n] or registered[:1]
        calls = [(f"call_{n}", name, {"n": n}) for n, name in enumerate(names, 1)]
        for call_id, name, arguments in calls:
            item = {
                "type": "dynamicToolCall",
                "id": call_id,
                "namespace": None,
                "tool": name,
                "arguments": arguments,
                "status": "inProgress",
            }
            self.note("item/started", item=item)
        texts: list[str] = []
        for rid, (call_id, name, arguments) in enumerate(calls):
            answer = self.ask(
                rid,
                "item/tool/call",
                threadId=self.tid,
                turnId=self.turn_id,
                callId=call_id,
                namespace=None,
                tool=name,
                arguments=arguments,
            )
            result = answer.get("result")
            if isinstance(result, dict):
                items = result.get("contentItems") or []
                assert isinstance(items, list)
                texts.append("".join(str(i.get("text", "")) for i in items))
            else:
                error = answer.get("error") or {}
                assert isinstance(error, dict)
                texts.append(f"error {error.get('code')}")
            self.note("item/completed", item={"type": "dynamicToolCall", "id": call_id})
        self.answer("tool results: " + " | ".join(texts))

    def run(self) -> None:
        opts = self.opts
        mode = opts.get("mode", "ok")
        reply = opts.get("reply", f"echo: {self.prompt}")
        count = int(opts.get("deltas", 3))
        if mode == "ok":
            self.answer(reply)
        elif mode == "reasoning":
            summary = opts.get("summary", "**Thinking** about it")
            self.note("item/reasoning/summaryTextDelta", itemId="rs_1", delta=summary)
            self.note(
                "item/completed",
                item={"type": "reasoning", "id": "rs_1", "summary": [summary], "content": []},
            )
            self.answer(reply)
        elif mode == "retry":
            self.note(
                "error",
                error={"message": "Reconnecting... 1/2", "codexErrorInfo": None},
                willRetry=True,
            )
            self.answer(reply)
        elif mode == "fail":
            message = opts.get("message", FAIL_401)
            self.deltas(reply, count)
            error: dict[str, object] = {"message": message, "codexErrorInfo": "other"}
            self.note("error", error=error, willRetry=False)
            self.completed("failed", error)
        elif mode == "approval":
            self.note(
                "item/started",
                item={
                    "type": "commandExecution",
                    "id": "call_1",
                    "command": "touch /x",
                    "status": "inProgress",
                },
            )
            answer = self.ask(
                0,
                "item/commandExecution/requestApproval",
                threadId=self.tid,
                turnId=self.turn_id,
                itemId="call_1",
                command="touch /x",
            )
            result = answer.get("result") or {}
            assert isinstance(result, dict)
            self.note(
                "item/completed",
                item={
                    "type": "commandExecution",
                    "id": "call_1",
                    "command": "touch /x",
                    "status": "declined",
                },
            )
            tool = self.ask(1, "item/tool/call", threadId=self.tid, turnId=self.turn_id, tool="t")
            refusal = tool.get("error") or {}
            assert isinstance(refusal, dict)
            self.answer(f"decision={result.get('decision')} tool={refusal.get('code')}")
        elif mode == "tools":
            self.call_tools()
        elif mode == "garbage":
            self.deltas(reply, count)
            write_line("this is not JSON-RPC")
            block()
        elif mode == "die":
            self.deltas(reply, count)
            os._exit(int(opts.get("code", 3)))
        elif mode in ("hang", "hang_ignore_term", "grandchild"):
            pids = [os.getpid()]
            if opts.get("ignore_term") == "1" or mode == "hang_ignore_term":
                signal.signal(signal.SIGTERM, signal.SIG_IGN)
            if opts.get("grandchild") == "1" or mode == "grandchild":
                code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(3600)"
                child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
                pids.append(child.pid)
            notify(opts, *pids)
            block()
        elif mode == "stream_gate":
            n = int(opts.get("count", 3))
            self.note("item/started", item={"type": "agentMessage", "id": self.msg_id, "text": ""})
            for i in range(n):
                self.note("item/agentMessage/delta", itemId=self.msg_id, delta=f"part-{i} ")
            notify(opts, os.getpid())
            with open(opts["gate"]) as gate:
                gate.readline()
            for i in range(n, 2 * n):
                self.note("item/agentMessage/delta", itemId=self.msg_id, delta=f"part-{i} ")
            self.usage()
            self.completed("completed")
        elif mode == "params":
            env = dict(os.environ)
            seen = {
                "argv": self.server.argv,
                "env": env,
                "pid": os.getpid(),
                "requests": self.server.received,
            }
            self.answer(json.dumps(seen))
        elif mode == "thread":
            resumed = self.server.threads.get(self.tid, False)
            self.answer(f"thread={self.tid} resumed={str(resumed).lower()}")
        elif not self.exec_mode(mode):
            self.completed("failed", {"message": f"fake app-server: unknown mode {mode}"})

    def exec_mode(self, mode: str) -> bool:
        """The modes of the fake ``codex exec`` (see the module docstring); False if unknown."""
        opts = self.opts
        if mode == "messages":
            gap = int(opts.get("gap_ms", 0)) / 1000
            for n in range(int(opts.get("count", 3))):
                self.msg_id = f"item_{n}"
                item = {"type": "agentMessage", "id": self.msg_id, "text": ""}
                self.note("item/started", item=item)
                self.deltas(f"part-{n}", 1)
                self.note("item/completed", item={**item, "text": f"part-{n}"})
                time.sleep(gap)
            self.opts = {**opts, "usage": opts.get("usage", "5,0,5,0")}
            self.usage()
            self.completed("completed")
        elif mode == "exit":
            sys.stdout.flush()
            os._exit(int(opts.get("code", 3)))
        elif mode == "close_stdout":
            sys.stdout.flush()
            os.close(1)
            notify(opts, os.getpid())
            block()
        elif mode == "orphan_stdout":
            code = "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nwhile True: time.sleep(3600)"
            child = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.DEVNULL)
            notify(opts, os.getpid(), child.pid)
            self.answer("done")
        elif mode == "bigline":
            self.note("some/future/event", blob="x" * (10 * 1024 * 1024))
            self.answer("after big line")
        elif mode == "flood":
            notify(opts, os.getpid())
            self.note("item/started", item={"type": "agentMessage", "id": self.msg_id, "text": ""})
            while True:
                self.note("item/agentMessage/delta", itemId=self.msg_id, delta="y" * 65536)
        elif mode in ("env", "argv"):
            seen = dict(os.environ) if mode == "env" else self.server.argv
            self.answer(json.dumps(seen))
        elif mode == "stdin_echo":
            self.answer(self.prompt)
        elif mode == "slow":
            time.sleep(int(opts.get("delay_ms", 500)) / 1000)
            self.answer(opts.get("reply", "slow answer"))
        elif mode == "gate":
            notify(opts, os.getpid())
            with open(opts["gate"]) as gate:
                gate.readline()
            self.answer(opts.get("reply", "released"))
        else:
            return False
        return True


def main() -> int:
    args = sys.argv[1:]
    if args[:2] == ["debug", "models"]:
        print(json.dumps(MODELS))
        return 0
    if args == ["--version"]:
        print(f"codex-cli {process_options().get('version', '0.169.0')}")
        return 0
    if "app-server" not in args:
        print(f"fake app-server: unsupported arguments {args}", file=sys.stderr)
        return 2
    return Server(sys.argv).main()


if __name__ == "__main__":
    sys.exit(main())
