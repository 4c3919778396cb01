"""``GET /metrics``: the exposition parses, and its counters, histograms and gauges move as
requests succeed, fail, time out and are cancelled. In process, scripted backend, virtual time."""

from __future__ import annotations

import base64
from functools import partial
from pathlib import Path

import pytest
import trio
import trio.testing
from prometheus_client.parser import text_string_to_metric_families
from quart_trio import QuartTrio
from trio.testing import MockClock

from tests.support.fakes import ScriptedBackend
from tests.support.harness import chat_body
from tests.support.servers import park_a_tool_turn, runner_of, running_app
from trio_codex.http.guards import key_fingerprint
from trio_codex.http.metrics import KILL_CAUSES

CHAT = "/v1/chat/completions"
Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


async def scrape(app: QuartTrio, **headers: str) -> Samples:
    """Every sample of ``/metrics``, by name and labels (the text must parse)."""
    r = await app.test_client().get("/metrics", headers=headers)
    assert r.status_code == 200, await r.get_data()
    assert r.headers["Content-Type"].startswith("text/plain; version=")
    text = await r.get_data(as_text=True)
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def settle(app: QuartTrio) -> None:
    """Every run is over and every request's outcome has reached the hooks."""
    await runner_of(app).running.wait_value(0)
    await trio.testing.wait_all_tasks_blocked()


async def test_a_success_counts_the_request_its_latencies_and_tokens(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """One chat answered after 3 virtual seconds: requests_total, tokens by model and key,
    run time 3 s, first content at 3 s, no queue wait, first byte at 3 s (not streamed)."""
    async with running_app(tmp_path, backend, api_keys=("sk-a",)) as app:
        before = await scrape(app)
        assert value(before, "trio_codex_requests_total", route=CHAT, model="gpt-test") == 0
        r = await app.test_client().post(
            CHAT,
            json=chat_body("[[run:sleep=3;usage=10,2,5,1]]"),
            headers={"Authorization": "Bearer sk-a"},
        )
        assert r.status_code == 200
        await settle(app)
        after = await scrape(app)
    ok = {"route": CHAT, "model": "gpt-test", "status": "200", "code": ""}
    assert value(after, "trio_codex_requests_total", **ok) == 1
    key = key_fingerprint("sk-a")
    tokens = {
        kind: value(after, "trio_codex_tokens_total", model="gpt-test", key=key, kind=kind)
        for kind in ("input", "output", "cached", "reasoning")
    }
    assert tokens == {"input": 10, "output": 5, "cached": 2, "reasoning": 1}
    assert "sk-a" not in repr(after)
    assert value(after, "trio_codex_run_seconds_count", model="gpt-test") == 1
    assert value(after, "trio_codex_run_seconds_sum", model="gpt-test") == 3
    assert value(after, "trio_codex_time_to_first_content_seconds_sum", model="gpt-test") == 3
    assert value(after, "trio_codex_time_to_first_byte_seconds_sum", route=CHAT) == 3
    assert value(after, "trio_codex_queue_wait_seconds_count") == 1
    assert value(after, "trio_codex_queue_wait_seconds_sum") == 0
    assert value(after, "trio_codex_request_duration_seconds_count", route=CHAT) == 1
    # the bucket of 2.5 s does not hold a 3 s run; the one of 5 s does
    assert value(after, "trio_codex_run_seconds_bucket", model="gpt-test", le="2.5") == 0
    assert value(after, "trio_codex_run_seconds_bucket", model="gpt-test", le="5.0") == 1


async def test_a_stream_has_its_first_byte_before_its_content(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A streamed chat sends its head at once and its first text after 4 s."""
    async with running_app(tmp_path, backend) as app:
        r = await app.test_client().post(
            CHAT, json=chat_body("[[run:sleep=4;reply=hey]]", stream=True)
        )
        assert b"hey" in await r.get_data()
        await settle(app)
        samples = await scrape(app)
    assert value(samples, "trio_codex_time_to_first_byte_seconds_sum", route=CHAT) == 0
    assert value(samples, "trio_codex_time_to_first_content_seconds_sum", model="gpt-test") == 4
    assert value(samples, "trio_codex_tokens_total", model="gpt-test", key="", kind="input") == 10


async def test_failures_timeouts_and_cancellations_are_counted(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """An upstream 401, a run past CODEX_TIMEOUT and a client that leaves each count under their
    status and code; the timeout and the departure each kill one process group."""
    async with running_app(tmp_path, backend, timeout=5.0) as app:
        client = app.test_client()
        r = await client.post(CHAT, json=chat_body("[[run:fail=401 Unauthorized]]"))
        assert r.status_code == 401
        r = await client.post(CHAT, json=chat_body("[[run:sleep=30]]"))
        assert r.status_code == 504
        with trio.move_on_after(1):
            await client.post(CHAT, json=chat_body("[[run:sleep=30]]"))
        await settle(app)
        samples = await scrape(app)
    requests = "trio_codex_requests_total"
    m = {"route": CHAT, "model": "gpt-test"}
    assert value(samples, requests, **m, status="401", code="invalid_api_key") == 1
    assert value(samples, requests, **m, status="504", code="timeout") == 1
    assert value(samples, requests, **m, status="none", code="client_closed") == 1
    killed = "trio_codex_process_groups_killed_total"
    assert value(samples, killed, cause="timeout") == 1
    assert value(samples, killed, cause="disconnect") == 1
    assert value(samples, killed, cause="network_wait") == 0
    assert (killed, frozenset({("cause", "exit_limit")})) in samples  # present at 0
    assert value(samples, "trio_codex_run_seconds_sum", model="gpt-test") == 0 + 5 + 1
    assert value(samples, "trio_codex_tokens_total", model="gpt-test", key="", kind="input") == 0


async def test_label_values_stay_bounded(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A model the catalog does not know is ``other``; a URL no route matches is ``unmatched``."""
    async with running_app(tmp_path, backend) as app:
        client = app.test_client()
        r = await client.post(CHAT, json={**chat_body(), "model": "made-up\nmodel"})
        assert r.status_code == 404
        assert (await client.get("/nope/123")).status_code == 404
        await settle(app)
        samples = await scrape(app)
    requests = "trio_codex_requests_total"
    assert (
        value(samples, requests, route=CHAT, model="other", status="404", code="model_not_found")
        == 1
    )
    assert value(samples, requests, route="unmatched", model="", status="404", code="") == 1


async def test_gauges_show_running_and_queued_runs_at_scrape_time(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """With one slot and two requests: one run, one queued; both gone once they end."""
    async with running_app(tmp_path, backend, max_parallel_requests=1) as app:
        runner = runner_of(app)
        async with trio.open_nursery() as nursery:
            for _ in range(2):
                nursery.start_soon(
                    partial(app.test_client().post, CHAT, json=chat_body("[[run:sleep=10]]"))
                )
            await runner.queued.wait_value(1)
            busy = await scrape(app)
        await settle(app)
        idle = await scrape(app)
    assert value(busy, "trio_codex_slots") == 1
    assert value(busy, "trio_codex_runs_running") == 1
    assert value(busy, "trio_codex_requests_queued") == 1
    assert value(idle, "trio_codex_runs_running") == 0
    assert value(idle, "trio_codex_requests_queued") == 0
    assert value(idle, "trio_codex_queue_wait_seconds_sum") == 10
    assert value(idle, "trio_codex_ready") == 1
    info = {dict(labels)["backend"] for name, labels in idle if name == "trio_codex_info"}
    assert info == {"ScriptedBackend"}


async def test_each_app_has_its_own_registry(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """Two apps in one process count separately."""
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    async with (
        running_app(tmp_path / "a", backend) as first,
        running_app(tmp_path / "b", backend) as second,
    ):
        assert (await first.test_client().post(CHAT, json=chat_body())).status_code == 200
        await settle(first)
        ok = {"route": CHAT, "model": "gpt-test", "status": "200", "code": ""}
        assert value(await scrape(first), "trio_codex_requests_total", **ok) == 1
        assert value(await scrape(second), "trio_codex_requests_total", **ok) == 0


def _basic(password: str) -> str:
    return "Basic " + base64.b64encode(f"prometheus:{password}".encode()).decode()


@pytest.mark.parametrize("required", [False, True])
async def test_metrics_require_key(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend, required: bool
) -> None:
    """Open by default even with API keys; with METRICS_REQUIRE_KEY=1 a key is needed (Bearer or
    the password of Basic auth) and a 401 asks for Basic auth."""
    async with running_app(
        tmp_path, backend, api_keys=("sk-a",), metrics_require_key=required
    ) as app:
        client = app.test_client()
        anonymous = await client.get("/metrics")
        wrong = await client.get("/metrics", headers={"Authorization": _basic("sk-b")})
        assert (anonymous.status_code, wrong.status_code) == (
            (401, 401) if required else (200, 200)
        )
        if required:
            assert anonymous.headers["WWW-Authenticate"].startswith('Basic realm="trio_codex"')
            assert (await anonymous.get_json())["error"]["code"] == "missing_api_key"
        await scrape(app, Authorization="Bearer sk-a")
        await scrape(app, Authorization=_basic("sk-a"))
        # Basic auth is for the operator's endpoints only
        r = await client.post(CHAT, json=chat_body(), headers={"Authorization": _basic("sk-a")})
        assert r.status_code == 401


@pytest.mark.parametrize("stream", [False, True])
async def test_a_stop_sequence_kill_is_not_a_disconnect(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend, stream: bool
) -> None:
    """An answer complete at a stop sequence stops its run: a 200, killed by stop_sequence."""
    async with running_app(tmp_path, backend) as app:
        r = await app.test_client().post(
            CHAT,
            json=chat_body("[[run:reply=one END two;linger=30]]", stream=stream, stop=["END"]),
        )
        assert r.status_code == 200
        assert "two" not in await r.get_data(as_text=True)
        await settle(app)
        samples = await scrape(app)
    assert backend.runs[0].cancelled
    killed = "trio_codex_process_groups_killed_total"
    assert value(samples, killed, cause="stop_sequence") == 1
    assert value(samples, killed, cause="disconnect") == 0
    requests = "trio_codex_requests_total"
    assert value(samples, requests, route=CHAT, model="gpt-test", status="200", code="") == 1


async def test_a_codex_that_does_not_exit_after_its_answer_is_killed_at_the_exit_limit(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A complete answer whose Codex lingers: a 200, then killed by exit_limit."""
    async with running_app(tmp_path, backend) as app:
        r = await app.test_client().post(CHAT, json=chat_body("[[run:reply=done;linger=500]]"))
        assert r.status_code == 200
        await settle(app)
        samples = await scrape(app)
    killed = "trio_codex_process_groups_killed_total"
    assert value(samples, killed, cause="exit_limit") == 1
    assert sum(value(samples, killed, cause=c) for c in KILL_CAUSES) == 1


async def test_a_turn_waiting_for_tool_results_is_a_gauge_and_its_timeout_a_kill(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A run parked on the client's tool results shows in ``runs_waiting_for_tools``; when
    CODEX_TOOL_RESULT_TIMEOUT ends it (no request is answered then) it counts as a kill with
    cause ``tool_result_timeout``, and the gauge is back to 0."""
    async with running_app(
        tmp_path, backend, backend_name="app-server", tool_result_timeout=30.0
    ) as app:
        await park_a_tool_turn(app)
        parked = await scrape(app)
        await settle(app)
        ended = await scrape(app)
    assert value(parked, "trio_codex_runs_waiting_for_tools") == 1
    assert value(parked, "trio_codex_runs_running") == 1
    assert value(parked, "trio_codex_process_groups_killed_total", cause="tool_result_timeout") == 0
    assert value(ended, "trio_codex_runs_waiting_for_tools") == 0
    assert value(ended, "trio_codex_process_groups_killed_total", cause="tool_result_timeout") == 1
    assert value(ended, "trio_codex_process_groups_killed_total", cause="disconnect") == 0
