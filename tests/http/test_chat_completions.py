"""Layer 2: the app in process (Quart test client) with a scripted backend, on virtual time.

Deadlines are asserted exactly: nothing here starts a process or opens a socket, so
``autojump_clock`` is safe.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import trio
from trio.testing import MockClock

from tests.support import sse
from tests.support.fakes import ScriptedBackend
from tests.support.harness import chat_body
from tests.support.servers import runner_of, running_app
from trio_codex.run.runner import ATTACH_TIMEOUT, RunSpec


async def test_non_stream_completion_shape(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A plain request returns a chat.completion with the answer and mapped usage."""
    async with running_app(tmp_path, backend) as app:
        response = await app.test_client().post(
            "/v1/chat/completions", json=chat_body("[[run:reply=hi there]]")
        )
        assert response.status_code == 200
        body = await response.get_json()
        assert body["object"] == "chat.completion"
        assert body["id"].startswith("chatcmpl-")
        assert body["model"] == "gpt-test"
        assert body["choices"][0]["message"] == {
            "role": "assistant",
            "content": "hi there",
            "refusal": None,
            "annotations": [],
        }
        assert body["choices"][0]["finish_reason"] == "stop"
        assert body["usage"]["prompt_tokens"] == 10
        assert body["usage"]["completion_tokens"] == 5
        assert body["usage"]["total_tokens"] == 15
        assert body["usage"]["prompt_tokens_details"] == {"cached_tokens": 2}
        assert response.headers["x-request-id"].startswith("req_")


async def test_stream_shape_with_usage(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Role chunk, content, finish chunk, usage chunk with choices [], [DONE]; ids constant."""
    async with running_app(tmp_path, backend) as app:
        response = await app.test_client().post(
            "/v1/chat/completions",
            json=chat_body(
                "[[run:reply=abc;chunks=2]]", stream=True, stream_options={"include_usage": True}
            ),
        )
        assert response.status_code == 200
        assert response.headers["Content-Type"].startswith("text/event-stream")
        events = sse.payloads(await response.get_data(), comment="keep-alive")
        assert events[-1] == "[DONE]"
        chunks = events[:-1]
        assert {(c["id"], c["object"], c["created"], c["model"]) for c in chunks} == {
            (chunks[0]["id"], "chat.completion.chunk", chunks[0]["created"], "gpt-test")
        }
        assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
        text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks[1:-2])
        assert text == "abc\n\nabc"
        assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
        assert chunks[-1]["choices"] == []
        assert chunks[-1]["usage"]["total_tokens"] == 15
        assert all(c["usage"] is None for c in chunks[:-1])


async def test_stream_sends_keepalives_while_codex_is_silent(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A 12 s silent run with a 5 s interval gets two keep-alive comments before content."""
    async with running_app(tmp_path, backend, keepalive_interval=5.0) as app:
        response = await app.test_client().post(
            "/v1/chat/completions", json=chat_body("[[run:sleep=12;reply=x]]", stream=True)
        )
        events = sse.payloads(await response.get_data(), comment="keep-alive")
        assert events.count("keep-alive") == 2
        assert events.index("keep-alive") == 1  # after the role chunk, before any content


async def test_queue_timeout_returns_503_at_deadline(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """With the only slot busy, a request queued at t=1 gets 503 at exactly t=6 (timeout 5)."""
    async with running_app(tmp_path, backend, max_parallel_requests=1, queue_timeout=5.0) as app:
        client = app.test_client()
        start = trio.current_time()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: client.post("/v1/chat/completions", json=chat_body("[[run:sleep=30]]"))
            )
            await trio.sleep(1)
            response = await client.post(
                "/v1/chat/completions", json=chat_body("[[run:sleep=1]]", stream=True)
            )
            assert trio.current_time() - start == 6
            assert response.status_code == 503
            assert response.headers["Retry-After"] == "5"
            body = await response.get_json()
            assert body["error"]["code"] == "queue_timeout"
            assert body["error"]["type"] == "server_error"
        assert runner_of(app).limiter.borrowed_tokens == 0


async def test_exec_timeout_returns_504_at_deadline(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A run longer than CODEX_TIMEOUT=10 ends with 504 at exactly t=10, and is cancelled."""
    async with running_app(tmp_path, backend, timeout=10.0) as app:
        start = trio.current_time()
        response = await app.test_client().post(
            "/v1/chat/completions", json=chat_body("[[run:sleep=30]]")
        )
        assert trio.current_time() - start == 10
        assert response.status_code == 504
        assert (await response.get_json())["error"]["code"] == "timeout"
        assert backend.runs[0].cancelled
        assert backend.runs[0].ended_at == start + 10


async def test_exec_timeout_in_stream_is_an_error_frame(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Once streaming, a timeout ends the stream with a data: {"error"} frame, then [DONE] so
    that a client reading until [DONE] stops (the SDKs raise on the error frame)."""
    async with running_app(tmp_path, backend, timeout=10.0, keepalive_interval=100.0) as app:
        response = await app.test_client().post(
            "/v1/chat/completions", json=chat_body("[[run:sleep=30]]", stream=True)
        )
        assert response.status_code == 200
        events = sse.payloads(await response.get_data(), comment="keep-alive")
        assert events[-2]["error"]["code"] == "timeout"
        assert events[-1] == "[DONE]"
        assert events.count("[DONE]") == 1


async def test_exec_deadline_counts_from_slot_grant(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A request that queued 3 s still gets the full 10 s of execution."""
    async with running_app(
        tmp_path, backend, max_parallel_requests=1, timeout=10.0, queue_timeout=60.0
    ) as app:
        client = app.test_client()
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: client.post("/v1/chat/completions", json=chat_body("[[run:sleep=4]]"))
            )
            await trio.sleep(1)
            start = trio.current_time()
            response = await client.post("/v1/chat/completions", json=chat_body("[[run:sleep=30]]"))
            assert response.status_code == 504
            assert trio.current_time() - start == 13  # 3 s queued + the full 10 s


async def test_queued_client_that_leaves_frees_its_place(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Cancelling a queued request leaves no waiter; the next one gets the slot."""
    async with running_app(tmp_path, backend, max_parallel_requests=1, queue_timeout=60.0) as app:
        client = app.test_client()
        limiter = runner_of(app).limiter
        async with trio.open_nursery() as nursery:
            nursery.start_soon(
                lambda: client.post("/v1/chat/completions", json=chat_body("[[run:sleep=10]]"))
            )
            await trio.sleep(1)
            with trio.move_on_after(2):
                await client.post("/v1/chat/completions", json=chat_body("[[run:sleep=1]]"))
            assert limiter.statistics().tasks_waiting == 0
            response = await client.post("/v1/chat/completions", json=chat_body("[[run:reply=ok]]"))
            assert response.status_code == 200
        assert len(backend.runs) == 2
        assert limiter.borrowed_tokens == 0


async def test_no_slot_leaked_after_mixed_outcomes(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Success, failure, crash, timeout, queue timeout and cancellation all release their slot."""
    async with running_app(
        tmp_path, backend, max_parallel_requests=2, timeout=5.0, queue_timeout=3.0
    ) as app:
        client = app.test_client()
        prompts = [
            "[[run:reply=ok]]",
            "[[run:fail=unexpected status 401 Unauthorized: bad key]]",
            "[[run:crash=1]]",
            "[[run:sleep=60]]",
            "[[run:sleep=2]]",
            "[[run:sleep=4;reply=late]]",
        ]
        statuses: list[int] = []

        async def one(prompt: str, stream: bool) -> None:
            response = await client.post(
                "/v1/chat/completions", json=chat_body(prompt, stream=stream)
            )
            statuses.append(response.status_code)

        async with trio.open_nursery() as nursery:
            for i, prompt in enumerate(prompts * 2):
                nursery.start_soon(one, prompt, i % 2 == 0)
            with trio.move_on_after(1):
                await client.post("/v1/chat/completions", json=chat_body("[[run:sleep=9]]"))
        limiter = runner_of(app).limiter
        assert limiter.borrowed_tokens == 0
        assert limiter.statistics().tasks_waiting == 0
        assert len(statuses) == 12
        assert set(statuses) <= {200, 401, 500, 503, 504}
        assert {200, 503} <= set(statuses)
        assert backend.running == 0


async def test_crashing_backend_gives_500_and_server_keeps_serving(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A run that raises becomes a 500 envelope; the next request is answered normally."""
    async with running_app(tmp_path, backend) as app:
        client = app.test_client()
        bad = await client.post("/v1/chat/completions", json=chat_body("[[run:crash=1]]"))
        assert bad.status_code == 500
        assert (await bad.get_json())["error"]["type"] == "server_error"
        good = await client.post("/v1/chat/completions", json=chat_body("[[run:reply=fine]]"))
        assert good.status_code == 200


async def test_failure_maps_status_and_keeps_message(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Codex's 401 becomes our 401 with Codex's message; quota becomes 429."""
    async with running_app(tmp_path, backend) as app:
        client = app.test_client()
        r = await client.post(
            "/v1/chat/completions",
            json=chat_body("[[run:fail=unexpected status 401 Unauthorized: Incorrect API key]]"),
        )
        assert r.status_code == 401
        assert "Incorrect API key" in (await r.get_json())["error"]["message"]
        r = await client.post(
            "/v1/chat/completions",
            json=chat_body("[[run:fail=Quota exceeded. Check your plan and billing details.]]"),
        )
        assert r.status_code == 429
        assert r.headers["x-should-retry"] == "false"


async def test_rate_limit_429_with_retry_after(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """The third request within a minute is refused with Retry-After; a minute later it passes."""
    async with running_app(tmp_path, backend, rate_limit_per_minute=2) as app:
        client = app.test_client()
        for _ in range(2):
            assert (await client.get("/v1/models")).status_code == 200
        refused = await client.get("/v1/models")
        assert refused.status_code == 429
        assert refused.headers["Retry-After"] == "60"
        assert (await refused.get_json())["error"]["code"] == "rate_limit_exceeded"
        await trio.sleep(60)
        assert (await client.get("/v1/models")).status_code == 200


async def test_rate_limit_is_per_key(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Each API key has its own budget; the check runs after auth."""
    async with running_app(
        tmp_path, backend, rate_limit_per_minute=1, api_keys=("k1", "k2")
    ) as app:
        client = app.test_client()
        assert (await client.get("/v1/models", headers={"x-api-key": "k1"})).status_code == 200
        assert (await client.get("/v1/models", headers={"x-api-key": "k1"})).status_code == 429
        assert (await client.get("/v1/models", headers={"x-api-key": "k2"})).status_code == 200
        assert (await client.get("/v1/models", headers={"x-api-key": "bad"})).status_code == 401


async def test_auth_on_and_off(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """With keys set, missing or wrong keys get 401 invalid_api_key; /healthz stays public."""
    async with running_app(tmp_path, backend) as app:
        assert (await app.test_client().get("/v1/models")).status_code == 200
    async with running_app(tmp_path, backend, api_keys=("sk-a", "sk-b")) as app:
        client = app.test_client()
        missing = await client.get("/v1/models")
        assert missing.status_code == 401
        wrong = await client.get("/v1/models", headers={"Authorization": "Bearer sk-c"})
        assert wrong.status_code == 401
        assert (await wrong.get_json())["error"]["code"] == "invalid_api_key"
        assert "x-request-id" in wrong.headers
        ok = await client.get("/v1/models", headers={"Authorization": "Bearer sk-b"})
        assert ok.status_code == 200
        ok2 = await client.get("/models", headers={"x-api-key": "sk-a"})
        assert ok2.status_code == 200
        assert (await client.get("/healthz")).status_code == 200


async def test_models_list_and_retrieve_with_slash(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Models and effort aliases are listed; ids containing '/' are retrievable."""
    async with running_app(tmp_path, backend) as app:
        client = app.test_client()
        body = await (await client.get("/v1/models")).get_json()
        ids = {m["id"] for m in body["data"]}
        assert {"gpt-test", "gpt-test-high", "org/gpt-test-2", "org/gpt-test-2-low"} <= ids
        assert all(set(m) == {"id", "object", "created", "owned_by"} for m in body["data"])
        one = await client.get("/v1/models/org/gpt-test-2")
        assert (await one.get_json())["id"] == "org/gpt-test-2"
        missing = await client.get("/v1/models/nope")
        assert missing.status_code == 404
        assert (await missing.get_json())["error"]["code"] == "model_not_found"


async def test_effort_alias_and_x_codex_reach_the_run(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """model '<slug>-high' runs the slug with effort high; x_codex overrides win."""
    async with running_app(tmp_path, backend, allow_danger_full_access=True) as app:
        client = app.test_client()
        await client.post("/v1/chat/completions", json={**chat_body(), "model": "gpt-test-high"})
        await client.post(
            "/v1/chat/completions",
            json=chat_body(
                reasoning_effort="low",
                x_codex={"sandbox": "workspace-write", "network_access": True},
            ),
        )
        await client.post(
            "/v1/chat/completions",
            json=chat_body(x_codex={"sandbox": "danger-full-access", "reasoning_effort": "medium"}),
        )
        specs: list[RunSpec] = [r.spec for r in backend.runs]
        assert (specs[0].model, specs[0].reasoning_effort, specs[0].sandbox) == (
            "gpt-test",
            "high",
            "read-only",
        )
        assert (specs[1].reasoning_effort, specs[1].sandbox, specs[1].network_access) == (
            "low",
            "workspace-write",
            True,
        )
        assert (specs[2].sandbox, specs[2].reasoning_effort) == ("danger-full-access", "medium")


async def test_danger_request_needs_server_switch(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """x_codex.sandbox danger-full-access without the server switch is 403 sandbox_not_allowed."""
    async with running_app(tmp_path, backend) as app:
        r = await app.test_client().post(
            "/v1/chat/completions", json=chat_body(x_codex={"sandbox": "danger-full-access"})
        )
        assert r.status_code == 403
        body = await r.get_json()
        assert body["error"]["code"] == "sandbox_not_allowed"
        assert body["error"]["param"] == "x_codex.sandbox"
        assert backend.runs == []


@pytest.mark.parametrize(
    ("body", "status", "param"),
    [
        (b"{not json", 400, None),
        (b"[1, 2]", 400, None),
        (b"", 400, None),
        (b"[" * 200 + b"]" * 200, 400, None),
        (json.dumps({"model": "gpt-test"}).encode(), 400, "messages"),
        (json.dumps({"model": 5, "messages": []}).encode(), 400, "model"),
        (json.dumps(chat_body(stream="true")).encode(), 400, "stream"),
        (
            json.dumps(chat_body(x_codex={"network_access": "yes"})).encode(),
            400,
            "x_codex.network_access",
        ),
        (
            json.dumps(chat_body(x_codex={"reasoning_effort": "huge"})).encode(),
            400,
            "x_codex.reasoning_effort",
        ),
        (json.dumps(chat_body(x_codex={"sandbx": "read-only"})).encode(), 400, "x_codex.sandbx"),
        (
            json.dumps(chat_body(x_codex={"network_access": True})).encode(),
            400,
            "x_codex.network_access",
        ),
        (json.dumps({**chat_body(), "model": "gpt-4o"}).encode(), 404, "model"),
    ],
)
async def test_bad_input_is_a_4xx_naming_the_field(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    body: bytes,
    status: int,
    param: str | None,
) -> None:
    """Bad JSON, wrong types, bad enums and unknown models get a 4xx envelope, never a 5xx."""
    async with running_app(tmp_path, backend) as app:
        r = await app.test_client().post(
            "/v1/chat/completions", data=body, headers={"Content-Type": "application/json"}
        )
        assert r.status_code == status
        error = (await r.get_json())["error"]
        assert set(error) == {"message", "type", "param", "code"}
        assert error["param"] == param
        assert backend.runs == []


async def test_unknown_route_method_and_size_errors(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """404, 405 and 413 are OpenAI envelopes with x-request-id."""
    async with running_app(tmp_path, backend, max_body_bytes=2048) as app:
        client = app.test_client()
        r = await client.post("/v1/nothing", json={})
        assert r.status_code == 404
        assert (await r.get_json())["error"]["message"] == "Invalid URL (POST /v1/nothing)"
        r = await client.get("/v1/chat/completions")
        assert r.status_code == 405
        assert "x-request-id" in r.headers
        r = await client.post("/v1/chat/completions", json=chat_body("x" * 5000))
        assert r.status_code == 413
        assert (await r.get_json())["error"]["type"] == "invalid_request_error"


async def test_abandoned_run_spawns_nothing_and_frees_its_slot(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A started run whose consumer never attaches gives up after ATTACH_TIMEOUT."""
    async with running_app(tmp_path, backend, max_parallel_requests=1) as app:
        runner = runner_of(app)
        handle = await runner.start(app.nursery, RunSpec(prompt="[[run:reply=x]]"))
        assert runner.limiter.borrowed_tokens == 1
        start = trio.current_time()
        await handle.done.wait()
        assert trio.current_time() - start == ATTACH_TIMEOUT
        assert backend.runs == []
        assert runner.limiter.borrowed_tokens == 0


async def test_idle_timeout_ends_a_silent_run(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """With CODEX_IDLE_TIMEOUT=3, a run silent for 3 s ends with 504 at t=3."""
    async with running_app(tmp_path, backend, idle_timeout=3.0) as app:
        start = trio.current_time()
        r = await app.test_client().post("/v1/chat/completions", json=chat_body("[[run:sleep=30]]"))
        assert r.status_code == 504
        assert "CODEX_IDLE_TIMEOUT" in (await r.get_json())["error"]["message"]
        assert trio.current_time() - start == 3


@pytest.mark.parametrize("stream", [False, True])
async def test_chat_answers_at_turn_completed_and_codex_exits_on_its_own(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend, stream: bool
) -> None:
    """The answer leaves when the turn is complete; the run keeps its slot until Codex exits
    (5 s later here) and is not cancelled."""
    async with running_app(tmp_path, backend, max_parallel_requests=1) as app:
        runner = runner_of(app)
        start = trio.current_time()
        r = await app.test_client().post(
            "/v1/chat/completions", json=chat_body("[[run:reply=quick;linger=5]]", stream=stream)
        )
        assert r.status_code == 200
        body = await r.get_data()
        assert trio.current_time() == start
        assert b"quick" in body
        assert b"printed after the turn" not in body
        assert runner.limiter.borrowed_tokens == 1
        await runner.running.wait_value(0)
        assert trio.current_time() == start + 5
        assert not backend.runs[0].cancelled
        assert runner.limiter.borrowed_tokens == 0


@pytest.mark.parametrize("stream", [False, True])
async def test_log_line_of_an_early_answer_waits_for_codex_exit(
    autojump_clock: MockClock,
    tmp_path: Path,
    backend: ScriptedBackend,
    caplog: pytest.LogCaptureFixture,
    stream: bool,
) -> None:
    """The request line of a chat answered at turn.completed is written once Codex has
    exited, with its exit code and whole run time."""
    caplog.set_level("INFO", logger="trio_codex")
    async with running_app(tmp_path, backend) as app:
        r = await app.test_client().post(
            "/v1/chat/completions", json=chat_body("[[run:reply=quick;linger=5]]", stream=stream)
        )
        await r.get_data()
        assert not [m for m in caplog.messages if m.startswith("request id=")]
        await runner_of(app).running.wait_value(0)
        await trio.testing.wait_all_tasks_blocked()
        lines = [m for m in caplog.messages if m.startswith("request id=")]
        assert len(lines) == 1
        assert "status=200" in lines[0]
        assert "exit=0" in lines[0]
        assert "run_time=5.000" in lines[0]
        assert "tokens=15" in lines[0]
