"""``x_codex.progress`` with the real Codex CLI (both backends) against the fake upstream,
whose model calls Codex's own ``exec_command`` tool (``call_tool=exec_command``): Codex runs
the command, and the client sees it in ``reasoning_content`` before the answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.support.codex_cli import FakeUpstream
from tests.support.servers import ServerFactory, in_thread, sdk, serve_real_codex

pytestmark = [pytest.mark.slow, pytest.mark.realcodex]

PROMPT = 'Run it [[fake:call_tool=exec_command;call_args={"cmd":"echo progress-probe"}]]'


@pytest.mark.parametrize("backend", ["exec", "app-server"])
async def test_the_real_cli_reports_the_command_it_ran(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory, backend: str
) -> None:
    server = await serve_real_codex(tmp_path, upstream.base_url, start_server, backend=backend)

    def ask() -> Any:
        with sdk(server.v1) as client:
            return client.chat.completions.create(
                model="fake-model",
                messages=[{"role": "user", "content": PROMPT}],
                extra_body={"x_codex": {"progress": True}},
            )

    completion = await in_thread(ask, fail_after=60)
    message = completion.choices[0].message
    reasoning = (message.model_extra or {}).get("reasoning_content") or ""
    assert "echo progress-probe" in reasoning, (reasoning, message.content)
    assert "exited with 0" in reasoning, reasoning
    assert "progress-probe" in (message.content or "")  # the fake quotes the tool's output
