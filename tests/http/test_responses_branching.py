"""Layer 2 for branching conversations on ``/v1/responses``: which ``previous_response_id``
resumes its thread and which forks it, in process, with a fake Codex that keeps threads,
turns and rollout files the way Codex does (APP_SERVER.md 4.1-4.2).

The fake writes each thread's rollout under ``CODEX_HOME/sessions`` with a ``task_started``
record per turn and a ``token_count`` record of the thread's total, which is what the server
reads to tell the latest turn from an older one. Its answer is the history it was given, so a
test sees exactly which turns a run continued.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from pathlib import Path
from typing import Any

import trio
from quart_trio import QuartTrio
from trio.testing import MockClock
from trio_util import AsyncValue

from tests.support.servers import running_app
from trio_codex.openai.responses.ids import ResponseIdCodec, ResponseRef, key_binding
from trio_codex.run.events import (
    CodexEvent,
    MessageCompleted,
    ThreadStarted,
    TurnCompleted,
    TurnFailed,
    TurnStarted,
    Usage,
)
from trio_codex.run.runner import Emit, ExitInfo, RunSpec

SECRET = b"branching-test-secret-of-32-bytes!!"
CODEC = ResponseIdCodec(SECRET)

#: Every turn's own usage: input 100 per prompt in its history (this one included), output 10.
OUTPUT_TOKENS = 10


@dataclasses.dataclass
class Turn:
    turn_id: str
    prompt: str
    usage: Usage


@dataclasses.dataclass
class Thread:
    thread_id: str
    turns: list[Turn]
    #: Codex's total of the thread (a fork starts from its source's total at the fork point).
    total: Usage
    writing: bool = False


class ThreadsBackend:
    """A fake Codex that keeps threads as Codex does: ``resume`` continues the thread (and
    reports its running total, as ``codex exec resume`` does), ``fork_at_turn`` makes a new
    thread with the history up to that turn (reporting the turn's own usage, as app-server's
    fork does), and every turn is written to the thread's rollout file. A prompt holding
    ``[hold]`` waits for ``release`` before it completes."""

    def __init__(self, codex_home: Path) -> None:
        self.codex_home = codex_home
        self.threads: dict[str, Thread] = {}
        self.specs: list[RunSpec] = []
        self.release = trio.Event()
        #: How many ``[hold]`` runs wait for ``release`` now (awaitable: ``wait_value``).
        self.held = AsyncValue(0)

    def _rollout(self, thread_id: str) -> Path:
        day = self.codex_home / "sessions" / "2025" / "01" / "02"
        day.mkdir(parents=True, exist_ok=True)
        return day / f"rollout-2025-01-02T00-00-00-{thread_id}.jsonl"

    def _record(self, thread: Thread, payload: dict[str, Any]) -> None:
        line = json.dumps({"type": "event_msg", "payload": payload})
        with self._rollout(thread.thread_id).open("a", encoding="utf-8") as f:
            f.write(line + "\n")

    def _new_thread(self, turns: list[Turn], total: Usage) -> Thread:
        thread = Thread(str(uuid.uuid4()), list(turns), total)
        self.threads[thread.thread_id] = thread
        self._record(thread, {"type": "session_meta"})
        return thread

    async def run(self, spec: RunSpec, emit: Emit) -> ExitInfo:
        self.specs.append(spec)
        cumulative = False
        if spec.resume_thread_id is None:
            thread = self._new_thread([], Usage())
        else:
            source = self.threads.get(spec.resume_thread_id)
            if source is None:
                return await _fail(emit, f"no rollout found for thread id {spec.resume_thread_id}")
            if spec.fork_at_turn is None:
                if source.writing:
                    return await _fail(
                        emit, f"thread {source.thread_id} already has an active writer"
                    )
                thread, cumulative = source, True
            else:
                ids = [t.turn_id for t in source.turns]
                if spec.fork_at_turn not in ids:
                    return await _fail(emit, f"turn {spec.fork_at_turn} not found")
                kept = source.turns[: ids.index(spec.fork_at_turn) + 1]
                total = Usage()
                for turn in kept:
                    total = _add(total, turn.usage)
                thread = self._new_thread(kept, total)
        thread.writing = True
        try:
            turn = Turn(str(uuid.uuid4()), spec.prompt, Usage())
            await emit(ThreadStarted(thread.thread_id))
            self._record(thread, {"type": "task_started", "turn_id": turn.turn_id})
            await emit(TurnStarted(turn.turn_id))
            if "[hold]" in spec.prompt:
                self.held.value += 1
                await self.release.wait()
            history = [t.prompt for t in thread.turns] + [spec.prompt]
            turn.usage = Usage(input_tokens=100 * len(history), output_tokens=OUTPUT_TOKENS)
            thread.turns.append(turn)
            thread.total = _add(thread.total, turn.usage)
            self._record(
                thread,
                {
                    "type": "token_count",
                    "info": {
                        "total_token_usage": {
                            "input_tokens": thread.total.input_tokens,
                            "output_tokens": thread.total.output_tokens,
                        }
                    },
                },
            )
            await emit(MessageCompleted("item_0", json.dumps(history)))
            await emit(TurnCompleted(thread.total if cumulative else turn.usage))
        finally:
            thread.writing = False
        return ExitInfo(0, "")


def _add(a: Usage, b: Usage) -> Usage:
    return Usage(
        input_tokens=a.input_tokens + b.input_tokens,
        output_tokens=a.output_tokens + b.output_tokens,
    )


async def _fail(emit: Emit, message: str) -> ExitInfo:
    event: CodexEvent = TurnFailed(message)
    await emit(event)
    return ExitInfo(1, message)


async def ask(app: QuartTrio, prompt: str, previous: str | None = None, **extra: Any) -> Any:
    payload: dict[str, Any] = {"model": "gpt-test", "input": prompt, **extra}
    if previous is not None:
        payload["previous_response_id"] = previous
    r = await app.test_client().post("/v1/responses", json=payload)
    return r.status_code, await r.get_json()


def history(response: dict[str, Any]) -> list[str]:
    text = response["output"][-1]["content"][0]["text"]
    result: list[str] = json.loads(text)
    return result


def ref(app: QuartTrio, response_id: str) -> ResponseRef:
    return CODEC.decode(response_id, key_binding(None))


async def conversation(app: QuartTrio, *prompts: str) -> list[dict[str, Any]]:
    """A linear conversation: each prompt continues the previous response."""
    out: list[dict[str, Any]] = []
    for prompt in prompts:
        status, body = await ask(app, prompt, out[-1]["id"] if out else None)
        assert status == 200, body
        out.append(body)
    return out


async def test_continuing_the_latest_response_resumes_and_an_older_one_branches(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    """Turns 1-3 resume one thread; continuing turn 1 forks it at turn 1 into a new thread
    whose history is turn 1 only, with this request's own usage."""
    backend = ThreadsBackend(tmp_path / "codex-home")
    async with running_app(
        tmp_path, backend, backend_name="app-server", response_id_secret=SECRET
    ) as app:
        one, two, three = await conversation(app, "one", "two", "three")
        assert history(three) == ["one", "two", "three"]
        assert [s.fork_at_turn for s in backend.specs] == [None, None, None]
        thread = ref(app, one["id"]).thread_id
        assert {ref(app, r["id"]).thread_id for r in (one, two, three)} == {thread}
        turns = [ref(app, r["id"]).turn_id for r in (one, two, three)]
        assert turns == [t.turn_id for t in backend.threads[str(thread)].turns]

        status, branch = await ask(app, "branch", one["id"])
        assert status == 200, branch
        assert history(branch) == ["one", "branch"]
        spec = backend.specs[-1]
        assert (spec.resume_thread_id, spec.fork_at_turn) == (thread, turns[0])
        branched = ref(app, branch["id"])
        assert branched.thread_id not in (None, thread)
        assert branch["usage"]["input_tokens"] == 200  # the branch turn's own
        # The source thread is untouched: continuing its latest turn still resumes it.
        status, four = await ask(app, "four", three["id"])
        assert history(four) == ["one", "two", "three", "four"]
        assert backend.specs[-1].fork_at_turn is None
        assert four["usage"]["input_tokens"] == 400  # not the thread's total


async def test_a_branch_continues_like_any_conversation(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    """The branch's response resumes the branch; an older turn of the branch forks it again;
    two branches of one response are two threads."""
    backend = ThreadsBackend(tmp_path / "codex-home")
    async with running_app(
        tmp_path, backend, backend_name="app-server", response_id_secret=SECRET
    ) as app:
        one, _two = await conversation(app, "one", "two")
        _, b1 = await ask(app, "b1", one["id"])
        _, b1_alt = await ask(app, "b1-alt", one["id"])
        assert ref(app, b1["id"]).thread_id != ref(app, b1_alt["id"]).thread_id
        _, b2 = await ask(app, "b2", b1["id"])
        assert history(b2) == ["one", "b1", "b2"]
        assert backend.specs[-1].fork_at_turn is None  # b1 is its thread's latest turn
        assert b2["usage"]["input_tokens"] == 300
        _, b2_alt = await ask(app, "b2-alt", b1["id"])  # b1 is older now
        assert history(b2_alt) == ["one", "b1", "b2-alt"]
        assert backend.specs[-1].fork_at_turn == ref(app, b1["id"]).turn_id
        assert history(b1_alt) == ["one", "b1-alt"]


async def test_concurrent_branches_of_one_response_and_a_busy_latest_turn(
    tmp_path: Path,
) -> None:
    """While a continuation of the latest turn runs, a second one is 409, and branches of an
    older response run concurrently (a fork takes no lock on its source). Real time: rollouts
    are read in worker threads, during which a virtual clock would jump to CODEX_TIMEOUT and
    end the held run."""
    backend = ThreadsBackend(tmp_path / "codex-home")
    async with running_app(
        tmp_path, backend, backend_name="app-server", response_id_secret=SECRET
    ) as app:
        one, two = await conversation(app, "one", "two")
        results: dict[str, Any] = {}

        async def run(name: str, prompt: str, previous: str) -> None:
            results[name] = await ask(app, prompt, previous)

        async with trio.open_nursery() as nursery:
            nursery.start_soon(run, "latest", "three [hold]", two["id"])
            # Rollouts are read in worker threads: wait for the run itself, not for quiet.
            await backend.held.wait_value(1)
            await run("busy", "three again", two["id"])
            nursery.start_soon(run, "b1", "b1 [hold]", one["id"])
            nursery.start_soon(run, "b2", "b2 [hold]", one["id"])
            await backend.held.wait_value(3)
            assert results["busy"][0] == 409
            assert results["busy"][1]["error"]["code"] == "conversation_busy"
            assert "b1" not in results  # held: both branches are running at once
            backend.release.set()
        assert [results[n][0] for n in ("latest", "b1", "b2")] == [200, 200, 200]
        assert history(results["b1"][1]) == ["one", "b1 [hold]"]
        assert history(results["b2"][1]) == ["one", "b2 [hold]"]


async def test_streamed_ids_carry_the_turn(autojump_clock: MockClock, tmp_path: Path) -> None:
    """A streamed response's id (in response.created) names its turn, so it can be branched."""
    backend = ThreadsBackend(tmp_path / "codex-home")
    async with running_app(
        tmp_path, backend, backend_name="app-server", response_id_secret=SECRET
    ) as app:
        one, _two = await conversation(app, "one", "two")
        r = await app.test_client().post(
            "/v1/responses",
            json={
                "model": "gpt-test",
                "input": "b",
                "previous_response_id": one["id"],
                "stream": True,
            },
        )
        events = [
            json.loads(line.removeprefix("data: "))
            for line in (await r.get_data(as_text=True)).splitlines()
            if line.startswith("data: ")
        ]
    created = ref(app, events[0]["response"]["id"])
    branch = backend.threads[str(created.thread_id)]
    assert created.turn_id == branch.turns[-1].turn_id
    assert events[-1]["response"]["id"] == events[0]["response"]["id"]


async def test_exec_cannot_branch_but_continues_the_latest(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    """On the exec backend an older response is a 400 naming previous_response_id (exec fork
    cannot fork at a turn), and nothing runs; the latest one resumes."""
    backend = ThreadsBackend(tmp_path / "codex-home")
    async with running_app(
        tmp_path, backend, backend_name="app-server", response_id_secret=SECRET
    ) as app:
        one, two = await conversation(app, "one", "two")
    async with running_app(
        tmp_path, backend, backend_name="exec", response_id_secret=SECRET
    ) as app:
        runs = len(backend.specs)
        status, error = await ask(app, "branch", one["id"])
        assert status == 400
        assert error["error"]["param"] == "previous_response_id"
        assert "CODEX_BACKEND=app-server" in error["error"]["message"]
        assert len(backend.specs) == runs
        status, three = await ask(app, "three", two["id"])
        assert status == 200
        assert history(three) == ["one", "two", "three"]


async def test_an_id_without_a_turn_continues_the_latest_turn(
    autojump_clock: MockClock, tmp_path: Path
) -> None:
    """Ids minted without a turn (exec, or before turn ids) resume: the latest turn."""
    backend = ThreadsBackend(tmp_path / "codex-home")
    async with running_app(
        tmp_path, backend, backend_name="app-server", response_id_secret=SECRET
    ) as app:
        one, _two = await conversation(app, "one", "two")
        legacy = CODEC.encode(ResponseRef(ref(app, one["id"]).thread_id), key_binding(None))
        status, three = await ask(app, "three", legacy)
        assert status == 200
        assert history(three) == ["one", "two", "three"]
        assert backend.specs[-1].fork_at_turn is None
