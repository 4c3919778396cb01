"""Logs: ``LOG_FORMAT=json`` gives one JSON object per request with the documented fields
(``http.access.request_fields``) from the same hook as the text line; ``configure_logging``
leaves a process that configured logging itself alone. In process, virtual time."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import trio.testing
from trio.testing import MockClock

from tests.support.fakes import ScriptedBackend, make_settings
from tests.support.harness import chat_body
from tests.support.servers import runner_of, running_app
from trio_codex.http.guards import key_fingerprint
from trio_codex.logs import configure_logging, formatter
from trio_codex.settings import Settings, SettingsError

FIELDS = {
    "time",
    "level",
    "logger",
    "message",
    "request_id",
    "method",
    "path",
    "route",
    "key",
    "model",
    "stream",
    "status",
    "code",
    "queue_wait",
    "run_time",
    "first_byte",
    "first_content",
    "duration",
    "exit_code",
    "killed",
    "tokens",
}


@pytest.fixture
def json_log() -> Iterator[io.StringIO]:
    """What the ``trio_codex`` logger writes in the JSON format during the test."""
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(formatter("json"))
    logger = logging.getLogger("trio_codex")
    old_level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        yield out
    finally:
        logger.removeHandler(handler)
        logger.setLevel(old_level)


def request_lines(out: io.StringIO) -> list[dict[str, Any]]:
    lines = [json.loads(line) for line in out.getvalue().splitlines()]
    return [line for line in lines if line["message"].startswith("request id=")]


async def test_json_request_records_carry_the_documented_fields(
    autojump_clock: MockClock, tmp_path: Path, backend: ScriptedBackend, json_log: io.StringIO
) -> None:
    """A success and a timeout: one JSON object each, every documented field, the values the
    text line has (and the key's fingerprint, never the key)."""
    async with running_app(tmp_path, backend, api_keys=("sk-a",), timeout=5.0) as app:
        client = app.test_client()
        auth = {"Authorization": "Bearer sk-a"}
        r = await client.post(
            "/v1/chat/completions",
            json=chat_body("[[run:sleep=2;usage=7,3,4,1]]", stream=True),
            headers=auth,
        )
        await r.get_data()
        first_id = r.headers["x-request-id"]
        r = await client.post(
            "/v1/chat/completions", json=chat_body("[[run:sleep=9]]"), headers=auth
        )
        assert r.status_code == 504
        await runner_of(app).running.wait_value(0)
        await trio.testing.wait_all_tasks_blocked()
    ok, timed_out = request_lines(json_log)
    assert set(ok) == FIELDS
    assert ok["level"] == "INFO"
    assert ok["logger"] == "trio_codex"
    assert ok["request_id"] == first_id
    assert ok["key"] == key_fingerprint("sk-a")
    assert "sk-a" not in json_log.getvalue()
    assert (ok["method"], ok["path"], ok["route"]) == ("POST", *(["/v1/chat/completions"] * 2))
    assert (ok["model"], ok["stream"], ok["status"], ok["code"]) == ("gpt-test", True, 200, None)
    assert (ok["queue_wait"], ok["run_time"], ok["first_byte"], ok["first_content"]) == (0, 2, 0, 2)
    assert (ok["exit_code"], ok["killed"]) == (0, None)
    assert ok["tokens"] == {"input": 7, "output": 4, "cached": 3, "reasoning": 1, "total": 11}
    assert ok["time"].endswith("+00:00")
    assert timed_out["request_id"] == r.headers["x-request-id"]
    assert (timed_out["status"], timed_out["code"], timed_out["killed"]) == (
        504,
        "timeout",
        "timeout",
    )
    assert timed_out["run_time"] == 5
    assert timed_out["tokens"] is None


def test_configure_logging_leaves_a_configured_process_alone(tmp_path: Path) -> None:
    """pytest has put its handlers on the root logger: nothing is added."""
    assert logging.getLogger().handlers
    assert configure_logging(make_settings(tmp_path, log_format="json")) is None
    assert not logging.getLogger("trio_codex").handlers


def test_log_format_is_validated(tmp_path: Path) -> None:
    env = {"CODEX_PATH": "/bin/true", "CODEX_HOME": str(tmp_path)}
    assert Settings.from_env(env, make_workdir=False).log_format == "text"
    assert Settings.from_env({**env, "LOG_FORMAT": "json"}, make_workdir=False).log_format == "json"
    with pytest.raises(SettingsError, match="LOG_FORMAT: 'xml' is not one of: text, json"):
        Settings.from_env({**env, "LOG_FORMAT": "xml"}, make_workdir=False)
