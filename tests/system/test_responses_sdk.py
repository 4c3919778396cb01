"""Both official SDKs as Responses API clients against real Hypercorn and the fake codex.

Python: the sync client runs in a worker thread (``trio.to_thread``) so the server keeps
running on the test's trio loop, closed after each test; the async client runs on trio.
Node: ``tests/node/responses.mjs`` runs as a subprocess (skipped outside CI with a message when
``tests/node/node_modules`` is missing; in CI that is a failure).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import openai
import pydantic
import pytest
import trio
from openai.types.responses import ResponseFormatTextJSONSchemaConfigParam

from tests.support.fakes import make_fifo, read_notify
from tests.support.paths import NODE_DIR
from tests.support.servers import (
    SdkClientFactory,
    ServerFactory,
    ignore_sdk_stream_gc,
    in_thread,
    serve_fake,
    skip_or_fail,
)
from trio_codex.settings import BackendName

pytestmark = pytest.mark.slow


class Person(pydantic.BaseModel):
    name: str
    age: int


async def test_responses_create(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    sdk_client: SdkClientFactory,
) -> None:
    """responses.create returns the answer as output_text, with usage and echoed fields."""
    url = await serve_fake(tmp_path, fake_codex, start_server, backend=codex_backend)
    response = await in_thread(
        lambda: sdk_client(url).responses.create(
            model="gpt-test",
            instructions="Be brief.",
            input=[{"role": "user", "content": "hi [[codex:reply=Hello!]]"}],
            temperature=0.3,
            max_output_tokens=100,
            metadata={"ticket": "7"},
        )
    )
    assert response.output_text == "Hello!"
    assert response.status == "completed"
    assert response.id.startswith("resp_")
    assert response.instructions == "Be brief."
    assert response.temperature == 0.3
    assert response.metadata == {"ticket": "7"}
    assert response.usage is not None
    assert (response.usage.input_tokens, response.usage.output_tokens) == (11, 7)
    assert response.usage.input_tokens_details.cached_tokens == 3
    assert response.usage.output_tokens_details.reasoning_tokens == 2


async def test_responses_stream_helper(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    sdk_client: SdkClientFactory,
) -> None:
    """responses.stream() yields typed events and get_final_response() the whole response."""
    url = await serve_fake(tmp_path, fake_codex, start_server, backend=codex_backend)

    def consume() -> tuple[list[Any], Any]:
        with sdk_client(url).responses.stream(
            model="gpt-test", input="[[codex:mode=reasoning;reply=streamed answer]]"
        ) as stream:
            events = list(stream)
            return events, stream.get_final_response()

    events, final = await in_thread(consume)
    assert events[0].type == "response.created"
    assert events[-1].type == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    deltas = [e.delta for e in events if e.type == "response.output_text.delta"]
    assert "".join(deltas) == "streamed answer"
    assert [item.type for item in final.output] == ["reasoning", "message"]
    assert final.output[0].summary[0].text == "**Thinking** about it"
    assert final.output_text == "streamed answer"
    assert final.id == events[0].response.id


async def test_responses_parse_returns_the_model(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    sdk_client: SdkClientFactory,
) -> None:
    """responses.parse(text_format=Model) returns the parsed object; the schema reaches Codex."""
    url = await serve_fake(tmp_path, fake_codex, start_server, backend=codex_backend)
    parsed = await in_thread(
        lambda: sdk_client(url).responses.parse(
            model="gpt-test",
            input='[[codex:reply={"name":"Ada","age":36}]]',
            text_format=Person,
        )
    )
    assert parsed.output_parsed == Person(name="Ada", age=36)
    mode = "argv" if codex_backend == "exec" else "params"
    seen = await in_thread(
        lambda: sdk_client(url).responses.create(
            model="gpt-test", input=f"[[codex:mode={mode}]]", text={"format": _format(Person)}
        )
    )
    if codex_backend == "exec":
        args = json.loads(seen.output_text)
        schema_file = Path(args[args.index("--output-schema") + 1])
        assert not schema_file.exists()  # removed with the run's scratch directory
    else:
        requests = json.loads(seen.output_text)["requests"]
        (turn,) = [r["params"] for r in requests if r.get("method") == "turn/start"]
        assert turn["outputSchema"] == _format(Person)["schema"]


def _format(model: type[pydantic.BaseModel]) -> ResponseFormatTextJSONSchemaConfigParam:
    return {
        "type": "json_schema",
        "name": model.__name__,
        "strict": True,
        "schema": {**model.model_json_schema(), "additionalProperties": False},
    }


async def test_chat_completions_parse_returns_the_model(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    sdk_client: SdkClientFactory,
) -> None:
    """chat.completions.parse(response_format=Model) returns the parsed object (last message)."""
    url = await serve_fake(tmp_path, fake_codex, start_server, backend=codex_backend)
    completion = await in_thread(
        lambda: sdk_client(url).chat.completions.parse(
            model="gpt-test",
            messages=[{"role": "user", "content": '[[codex:reply={"name":"Grace","age":85}]]'}],
            response_format=Person,
        )
    )
    assert completion.choices[0].message.parsed == Person(name="Grace", age=85)


@ignore_sdk_stream_gc
async def test_async_client_create_stream_and_continue(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName, start_server: ServerFactory
) -> None:
    """AsyncOpenAI creates, streams and continues a conversation on trio."""
    url = await serve_fake(tmp_path, fake_codex, start_server, backend=codex_backend)
    aclient = openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=0, timeout=20)
    with trio.fail_after(30):
        first = await aclient.responses.create(model="gpt-test", input="[[codex:reply=one]]")
        assert first.output_text == "one"
        async with aclient.responses.stream(
            model="gpt-test", input="[[codex:reply=two]]", previous_response_id=first.id
        ) as stream:
            async for _ in stream:
                pass
            second = await stream.get_final_response()
        assert second.output_text == "two"
        assert second.previous_response_id == first.id
        await aclient.close()


async def test_sdk_error_classes_for_conversations(
    tmp_path: Path,
    fake_codex: Path,
    codex_backend: BackendName,
    start_server: ServerFactory,
    sdk_client: SdkClientFactory,
) -> None:
    """Unknown ids raise NotFoundError; a second concurrent continuation raises ConflictError."""
    url = await serve_fake(tmp_path, fake_codex, start_server, backend=codex_backend)
    sdk = sdk_client(url)
    with pytest.raises(openai.NotFoundError) as missing:
        await in_thread(
            lambda: sdk.responses.create(
                model="gpt-test", input="x", previous_response_id="resp_unknown"
            )
        )
    assert missing.value.code == "previous_response_not_found"
    assert missing.value.param == "previous_response_id"
    first = await in_thread(lambda: sdk.responses.create(model="gpt-test", input="start"))
    fifo = make_fifo(tmp_path)
    async with trio.open_nursery() as nursery:

        async def hold() -> None:
            aclient = openai.AsyncOpenAI(base_url=url, api_key="k", max_retries=0, timeout=20)
            await aclient.responses.create(
                model="gpt-test",
                input=f"[[codex:mode=hang;notify={fifo}]]",
                previous_response_id=first.id,
            )

        nursery.start_soon(hold)
        with trio.fail_after(10):
            await read_notify(fifo)
        with pytest.raises(openai.ConflictError) as busy:
            await in_thread(
                lambda: sdk.responses.create(
                    model="gpt-test", input="x", previous_response_id=first.id
                )
            )
        nursery.cancel_scope.cancel()
    assert busy.value.status_code == 409
    assert busy.value.code == "conversation_busy"


def _node() -> str:
    node = shutil.which("node")
    ready = node is not None and (NODE_DIR / "node_modules" / "openai").is_dir()
    if not ready or node is None:
        skip_or_fail("the Node SDK is not installed: run npm ci --prefix tests/node (needs node)")
    return node


async def test_node_sdk_create_stream_and_final_response(
    tmp_path: Path, fake_codex: Path, codex_backend: BackendName, start_server: ServerFactory
) -> None:
    """The Node SDK (stricter stream checks) creates, streams, continues and parses."""
    node = _node()
    url = await serve_fake(tmp_path, fake_codex, start_server, backend=codex_backend)
    with trio.fail_after(60):
        done = await trio.run_process(
            [node, str(NODE_DIR / "responses.mjs"), url],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    assert done.returncode == 0, done.stderr.decode()
    out = json.loads(done.stdout)
    assert out["create"]["output_text"] == "Hello Node"
    assert out["create"]["status"] == "completed"
    assert out["create"]["metadata"] == {"via": "node"}
    assert out["create"]["total_tokens"] == 18
    stream = out["stream"]
    assert stream["status"] == "completed"
    assert stream["types"][:2] == ["response.created", "response.in_progress"]
    assert stream["types"][-1] == "response.completed"
    assert "response.reasoning_summary_text.delta" in stream["types"]
    assert stream["item_types"] == ["reasoning", "message"]
    assert stream["texts"] == ["streamed answer"]
    assert "".join(stream["deltas"]) == "streamed answer"
    assert out["next"] == {"previous_response_id": stream["id"], "texts": ["second turn"]}
    assert out["parse"]["texts"] == ['{"name":"Ada","age":36}']
    assert out["parse"]["output_parsed"] == {"name": "Ada", "age": 36}
    assert out["not_found"] == {
        "name": "NotFoundError",
        "status": 404,
        "code": "previous_response_not_found",
    }
