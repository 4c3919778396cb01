"""``/status.json`` and ``/status``: requests in flight with their state, age and model, recent
outcomes, tokens per key since start, the access rule and the page's headers. In process,
scripted backend, virtual time (the page itself runs in Chromium: tests/system)."""

from __future__ import annotations

import base64
import hashlib
import re
from functools import partial
from pathlib import Path
from typing import Any

import pytest
import trio
import trio.testing
from quart_trio import QuartTrio
from trio.testing import MockClock

from tests.support.fakes import ScriptedBackend
from tests.support.harness import chat_body
from tests.support.servers import park_a_tool_turn, runner_of, running_app
from trio_codex.api import components
from trio_codex.http.guards import key_fingerprint

CHAT = "/v1/chat/completions"
TOKENS = ("input", "cached", "output", "reasoning")


async def status(app: QuartTrio, **headers: str) -> dict[str, Any]:
    r = await app.test_client().get("/status.json", headers=headers)
    assert r.status_code == 200, await r.get_data()
    body: dict[str, Any] = await r.get_json()
    return body


async def test_a_running_request_shows_with_its_age_then_moves_to_recent(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """With one slot: a run 7 s old and a request queued behind it; once both are over, they
    are recent outcomes and the key's tokens are summed (fingerprints, never keys)."""
    auth = {"Authorization": "Bearer sk-a"}
    async with running_app(tmp_path, backend, api_keys=("sk-a",), max_parallel_requests=1) as app:
        runner = runner_of(app)
        async with trio.open_nursery() as nursery:
            post = partial(app.test_client().post, CHAT, headers=auth)
            nursery.start_soon(partial(post, json=chat_body("[[run:sleep=10]]")))
            await runner.running.wait_value(1)
            nursery.start_soon(partial(post, json=chat_body("[[run:sleep=1]]", stream=True)))
            await runner.queued.wait_value(1)
            await trio.sleep(7)
            busy = await status(app, **auth)
        await runner.running.wait_value(0)
        await trio.testing.wait_all_tasks_blocked()
        idle = await status(app, **auth)
    key = key_fingerprint("sk-a")
    assert busy["slots"] == {"total": 1, "running": 1, "queued": 1, "waiting_for_tools": 0}
    running, queued = busy["requests"]  # not this status.json request
    assert running["state"] == "running"
    assert (running["model"], running["key"], running["stream"]) == ("gpt-test", key, False)
    assert (running["age"], running["run_age"]) == (7, 7)
    assert running["route"] == CHAT
    assert (queued["state"], queued["run_age"], queued["stream"]) == ("waiting", None, False)
    assert idle["requests"] == []
    assert [(r["status"], r["stream"], r["duration"]) for r in idle["recent"]] == [
        (200, True, 11),  # newest first: queued 10 s, ran 1 s
        (200, False, 10),
    ]
    (totals,) = idle["keys"]
    assert totals == {
        "key": key,
        "requests": 2,
        "input": 20,
        "cached": 4,
        "output": 10,
        "reasoning": 2,
    }
    assert idle["server"]["ready"] is True
    assert "sk-a" not in repr(idle)


async def test_a_client_chosen_model_name_is_cut(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    async with running_app(tmp_path, backend) as app:
        r = await app.test_client().post(CHAT, json={**chat_body(), "model": "m" * 5000})
        assert r.status_code == 404
        await trio.testing.wait_all_tasks_blocked()
        body = await status(app)
    assert [r["model"] for r in body["recent"]] == ["m" * 100]
    assert body["keys"] == [{"key": "-", "requests": 1, **dict.fromkeys(TOKENS, 0)}]


async def test_the_page_allows_only_its_own_script_and_style(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """HTML with a policy whose hashes are those of its inline script and style."""
    async with running_app(tmp_path, backend) as app:
        r = await app.test_client().get("/status")
        page = await r.get_data()
    assert isinstance(page, bytes)
    assert r.status_code == 200
    assert r.headers["Content-Type"] == "text/html; charset=utf-8"
    policy = r.headers["Content-Security-Policy"]
    for tag in ("script", "style"):
        (body,) = re.findall(rf"<{tag}>(.*?)</{tag}>".encode(), page, re.DOTALL)
        digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
        assert f"{tag}-src 'sha256-{digest}'" in policy
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert b'fetch("status.json"' in page


@pytest.mark.parametrize("path", ["/status", "/status.json"])
async def test_the_status_page_follows_the_metrics_access_rule(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend, path: str
) -> None:
    async with running_app(tmp_path, backend, api_keys=("sk-a",)) as app:
        assert (await app.test_client().get(path)).status_code == 200
    async with running_app(tmp_path, backend, api_keys=("sk-a",), metrics_require_key=True) as app:
        client = app.test_client()
        refused = await client.get(path)
        assert refused.status_code == 401
        assert refused.headers["WWW-Authenticate"].startswith("Basic ")
        basic = "Basic " + base64.b64encode(b"me:sk-a").decode()
        assert (await client.get(path, headers={"Authorization": basic})).status_code == 200
        # the page's own requests are not shown, nor counted as in flight
        assert (await status(app, Authorization=basic))["recent"] == []
        assert components(app).live.count.value == 0


async def test_a_turn_waiting_for_tool_results_is_counted_in_the_slots(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend
) -> None:
    """A run parked on the client's tool results holds a slot and is counted as waiting for
    them; the count drops once the tool-result bound ends it."""
    async with running_app(
        tmp_path, backend, backend_name="app-server", tool_result_timeout=30.0
    ) as app:
        await park_a_tool_turn(app)
        parked = await status(app)
        await runner_of(app).running.wait_value(0)
        ended = await status(app)
    assert parked["slots"] == {"total": 4, "running": 1, "queued": 0, "waiting_for_tools": 1}
    assert ended["slots"]["waiting_for_tools"] == 0
