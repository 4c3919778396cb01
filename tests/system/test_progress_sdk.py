"""``x_codex.progress`` read by the official SDKs, against real Hypercorn and the fake codex
(``mode=progress``: one command, one file change, as Codex CLI 0.169.0 prints them): the Python
SDK's ``responses.stream()`` helper and chat stream, and the Node SDK (tests/node/progress.mjs).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest
import trio

from tests.support.paths import NODE_DIR
from tests.support.servers import (
    SdkClientFactory,
    ServerFactory,
    in_thread,
    serve_fake,
    skip_or_fail,
)

pytestmark = pytest.mark.slow

PROMPT = "[[codex:mode=progress;reply=done]]"
NOTES = [
    "Running `/bin/bash -lc 'echo hi'`",
    "`/bin/bash -lc 'echo hi'` exited with 0",
    "Changed: add notes.txt",
]


async def test_python_sdk_stream_helper_reads_progress_items(
    tmp_path: Path, fake_codex: Path, start_server: ServerFactory, sdk_client: SdkClientFactory
) -> None:
    url = await serve_fake(tmp_path, fake_codex, start_server)

    def consume() -> tuple[list[Any], Any]:
        with sdk_client(url).responses.stream(
            model="gpt-test", input=PROMPT, extra_body={"x_codex": {"progress": True}}
        ) as stream:
            return list(stream), stream.get_final_response()

    events, final = await in_thread(consume)
    assert final.status == "completed"
    assert final.output_text == "done"
    summaries = [item.summary[0].text for item in final.output if item.type == "reasoning"]
    assert summaries == NOTES
    deltas = [e.delta for e in events if e.type == "response.reasoning_summary_text.delta"]
    assert deltas == NOTES


async def test_python_sdk_chat_stream_reads_progress_as_reasoning_content(
    tmp_path: Path, fake_codex: Path, start_server: ServerFactory, sdk_client: SdkClientFactory
) -> None:
    url = await serve_fake(tmp_path, fake_codex, start_server)

    def consume() -> tuple[str, str]:
        chunks = sdk_client(url).chat.completions.create(
            model="gpt-test",
            messages=[{"role": "user", "content": PROMPT}],
            stream=True,
            extra_body={"x_codex": {"progress": True}},
        )
        reasoning = content = ""
        for chunk in chunks:
            for choice in chunk.choices:
                reasoning += getattr(choice.delta, "reasoning_content", None) or ""
                content += choice.delta.content or ""
        return reasoning, content

    reasoning, content = await in_thread(consume)
    assert reasoning == "\n\n".join(NOTES)
    assert content == "done"


async def test_node_sdk_reads_progress(
    tmp_path: Path, fake_codex: Path, start_server: ServerFactory
) -> None:
    node = shutil.which("node")
    if node is None or not (NODE_DIR / "node_modules" / "openai").is_dir():
        skip_or_fail("the Node SDK is not installed: run npm ci --prefix tests/node (needs node)")
    url = await serve_fake(tmp_path, fake_codex, start_server)
    with trio.fail_after(60):
        done = await trio.run_process(
            [node, str(NODE_DIR / "progress.mjs"), url],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    out = json.loads(done.stdout)
    assert out["responses"]["status"] == "completed"
    assert out["responses"]["output_text"] == "done"
    assert out["responses"]["summaries"] == NOTES
    assert out["responses"]["types"][-1] == "response.completed"
    assert out["chat"] == {"reasoning": "\n\n".join(NOTES), "content": "done"}
