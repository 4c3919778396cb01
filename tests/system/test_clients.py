"""The client recipes of ``docs/clients.md``, run for real: each client -> trio_codex (real
Hypercorn) -> the real Codex CLI -> the fake upstream. A recipe passes when the client returns
the exact reply the upstream was told to send, plain and streamed, through the API the recipe
uses (Chat Completions or Responses).

LangChain (``langchain-openai``), LiteLLM and openai-agents are in the ``tests`` dependency
group; the Node SDK and the Vercel AI SDK are pinned in ``tests/clients/node`` (``npm ci``). A
missing client is a skip outside CI and a failure in CI.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import trio
import yaml

from tests.support.codex_cli import FakeUpstream, codex_env, exec_argv
from tests.support.servers import (
    ServerFactory,
    in_thread,
    require_codex_cli,
    serve_real_codex,
    skip_or_fail,
)
from trio_codex.codex.models import discover_models

pytestmark = [pytest.mark.slow, pytest.mark.realcodex]

NODE_CLIENTS = Path(__file__).resolve().parent.parent / "clients" / "node"


def _require(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        skip_or_fail(f"{package} is not installed: pip install {package} (the tests group has it)")


async def _server(tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory) -> str:
    return (await serve_real_codex(tmp_path, upstream.base_url, start_server)).v1


def _prompts(upstream: FakeUpstream) -> list[str]:
    """The last user text of every request that reached the upstream, in order."""
    found = []
    for entry in upstream.responses_requests():
        users = [m for m in entry["body"]["input"] if m.get("role") == "user"]
        found.append(users[-1]["content"][-1]["text"])
    return found


async def test_langchain_chat_and_responses(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """``ChatOpenAI`` with ``base_url``: invoke and stream over Chat Completions, and invoke
    with ``use_responses_api=True``."""
    _require("langchain_openai", "langchain-openai")
    url = await _server(tmp_path, upstream, start_server)

    def recipe() -> tuple[Any, str, Any]:
        from langchain_openai import ChatOpenAI

        llm = ChatOpenAI(base_url=url, api_key="sk-anything", model="fake-model", max_retries=0)
        plain = llm.invoke("Hi [[fake:reply=LangChain chat]]")
        streamed = "".join(
            str(chunk.content)
            for chunk in llm.stream("Hi [[fake:reply=LangChain stream;chunks=3]]")
        )
        responses = ChatOpenAI(
            base_url=url, api_key="sk-anything", model="fake-model", use_responses_api=True
        ).invoke("Hi [[fake:reply=LangChain responses]]")
        return plain, streamed, responses

    plain, streamed, responses = await in_thread(recipe, fail_after=120)
    assert plain.content == "LangChain chat"
    assert plain.usage_metadata["input_tokens"] > 0
    assert streamed == "LangChain stream"
    assert responses.text == "LangChain responses"
    assert len(upstream.responses_requests()) == 3


async def test_litellm_completion_stream_and_responses(
    tmp_path: Path,
    upstream: FakeUpstream,
    start_server: ServerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``litellm.completion(model="openai/<id>", api_base=...)``, plain and streamed, and
    ``litellm.responses``."""
    _require("litellm", "litellm")
    # LiteLLM fetches its model price list from the internet at import unless told not to.
    monkeypatch.setenv("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    url = await _server(tmp_path, upstream, start_server)

    def recipe() -> tuple[str, str, str]:
        import litellm

        common: dict[str, Any] = {
            "model": "openai/fake-model",
            "api_base": url,
            "api_key": "sk-anything",
        }
        plain = litellm.completion(
            messages=[{"role": "user", "content": "Hi [[fake:reply=LiteLLM chat]]"}], **common
        )
        chunks = litellm.completion(
            messages=[{"role": "user", "content": "Hi [[fake:reply=LiteLLM stream;chunks=3]]"}],
            stream=True,
            **common,
        )
        streamed = "".join(chunk.choices[0].delta.content or "" for chunk in chunks)
        response = litellm.responses(input="Hi [[fake:reply=LiteLLM responses]]", **common)
        assert isinstance(response, litellm.ResponsesAPIResponse)
        message: Any = response.output[-1]  # a message item (litellm types every item kind)
        return plain.choices[0].message.content, streamed, message.content[0].text

    assert await in_thread(recipe, fail_after=120) == (
        "LiteLLM chat",
        "LiteLLM stream",
        "LiteLLM responses",
    )


async def test_openai_agents_responses_and_chat_models(
    tmp_path: Path,
    upstream: FakeUpstream,
    start_server: ServerFactory,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """An ``Agent`` on ``OpenAIResponsesModel`` and on ``OpenAIChatCompletionsModel`` with an
    ``AsyncOpenAI(base_url=...)`` client, tracing off (it would upload to OpenAI)."""
    _require("agents", "openai-agents")
    monkeypatch.setenv("OPENAI_AGENTS_DISABLE_TRACING", "1")
    url = await _server(tmp_path, upstream, start_server)

    def recipe() -> tuple[str, str]:
        import asyncio

        from agents import (
            Agent,
            OpenAIChatCompletionsModel,
            OpenAIResponsesModel,
            Runner,
            set_tracing_disabled,
        )
        from openai import AsyncOpenAI

        set_tracing_disabled(True)

        async def main() -> tuple[str, str]:
            async with AsyncOpenAI(base_url=url, api_key="sk-anything", max_retries=0) as client:
                on_responses = Agent(
                    name="helper",
                    instructions="Be brief.",
                    model=OpenAIResponsesModel(model="fake-model", openai_client=client),
                )
                on_chat = Agent(
                    name="helper",
                    instructions="Be brief.",
                    model=OpenAIChatCompletionsModel(model="fake-model", openai_client=client),
                )
                first = await Runner.run(on_responses, "Hi [[fake:reply=Agents responses]]")
                second = await Runner.run(on_chat, "Hi [[fake:reply=Agents chat]]")
                return str(first.final_output), str(second.final_output)

        return asyncio.run(main())

    assert await in_thread(recipe, fail_after=120) == ("Agents responses", "Agents chat")
    # The agent's instructions reached Codex with the prompt.
    sent = upstream.responses_requests()
    assert len(sent) == 2
    assert all("Be brief." in json.dumps(entry["body"]["input"]) for entry in sent)


async def test_node_sdk_and_vercel_ai_sdk(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """``tests/clients/node/clients.mjs``: the OpenAI Node SDK (chat, plain and streamed) and
    the Vercel AI SDK (Responses and chat models, plain and streamed)."""
    node = shutil.which("node")
    if node is None or not (NODE_CLIENTS / "node_modules" / "ai").is_dir():
        skip_or_fail("the Node clients are not installed: npm ci --prefix tests/clients/node")
    url = await _server(tmp_path, upstream, start_server)
    with trio.fail_after(120):
        result = await trio.run_process(
            [node, str(NODE_CLIENTS / "clients.mjs"), url],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout)
    assert out == {
        "nodeChat": "Node chat",
        "nodeStream": "Node streamed",
        "vercelResponses": "Vercel responses",
        "vercelResponsesTokens": out["vercelResponsesTokens"],
        "vercelChat": "Vercel chat",
        "vercelResponsesStream": "vercelResponsesStream text",
        "vercelChatStream": "vercelChatStream text",
    }
    assert out["vercelResponsesTokens"] > 0
    assert len(_prompts(upstream)) == 6


CODEX_AS_CLIENT = """\
model = "fake-model"
model_provider = "trio"

[model_providers.trio]
name = "trio_codex"
base_url = "{url}"
wire_api = "responses"
env_key = "TRIO_CODEX_API_KEY"
"""


async def test_codex_cli_as_a_client_is_refused_for_its_tools(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory, codex_backend: str
) -> None:
    """An outer ``codex exec`` whose ``config.toml`` provider is this server always offers the
    model its own tools (shell, patches). With ``exec`` the server refuses tools (400
    ``unsupported_parameter``, ``param: tools``); with app-server those tools carry the names of
    the inner Codex's own tools, a 400 naming the first one. Either way the outer turn fails
    with that message and no run starts."""
    url = (
        await serve_real_codex(tmp_path, upstream.base_url, start_server, backend=codex_backend)
    ).v1
    outer = tmp_path / "outer"
    (outer / "home").mkdir(parents=True)
    (outer / "codex-home").mkdir()
    (outer / "codex-home" / "config.toml").write_text(CODEX_AS_CLIENT.format(url=url))
    env = codex_env(outer / "home", outer / "codex-home", TRIO_CODEX_API_KEY="sk-anything")
    with trio.fail_after(120):
        result = await trio.run_process(
            exec_argv(require_codex_cli(), outer),
            stdin=b"Hi [[fake:reply=Codex through trio_codex]]",
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
        )
    events = [json.loads(line) for line in result.stdout.splitlines() if line.strip()]
    failed = [e for e in events if e.get("type") == "turn.failed"]
    assert result.returncode != 0
    assert len(failed) == 1, events
    error = json.loads(failed[0]["error"]["message"])["error"]
    if codex_backend == "exec":
        assert (error["code"], error["param"]) == ("unsupported_parameter", "tools")
    else:  # the outer Codex's own tools collide with the inner one's: named, not dropped
        assert (error["code"], error["param"]) == ("invalid_value", "tools[0].name")
        assert "exec_command" in error["message"]
    assert _prompts(upstream) == []  # refused before any Codex run


def _aider() -> str:
    """Aider is heavy (~700 MB) and not in a dependency group: ``TRIO_CODEX_TEST_AIDER`` names
    its executable, else ``aider`` on PATH; without it this test skips, in CI too."""
    configured = os.environ.get("TRIO_CODEX_TEST_AIDER", "").strip()
    found = shutil.which(configured or "aider")
    if found is None:
        pytest.skip(
            "aider is not installed: pip install aider-chat (in its own venv), then set "
            "TRIO_CODEX_TEST_AIDER to its aider"
        )
    return found


async def test_aider_applies_a_whole_file_edit(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """Aider (``--model openai/<id>``, whole-file edit format, streamed) gets the reply and
    applies the edit it carries to the file."""
    aider = _aider()
    url = await _server(tmp_path, upstream, start_server)
    work = tmp_path / "project"
    work.mkdir()
    (work / "calc.py").write_text("def add(a, b):\n    return a - b\n")
    reply = "calc.py\n```python\ndef add(a, b):\n    return a + b\n```\n"
    directive = f"[[fake:reply_b64={base64.b64encode(reply.encode()).decode()};chunks=4]]"
    argv = [
        aider,
        *("--openai-api-base", url, "--openai-api-key", "sk-anything"),
        *("--model", "openai/fake-model", "--edit-format", "whole"),
        *("--no-show-model-warnings", "--no-git", "--yes", "--no-check-update"),
        *("--no-analytics", "--no-pretty", "calc.py", "--message", f"Fix add {directive}"),
    ]
    env = {
        "PATH": os.environ["PATH"],
        "HOME": str(tmp_path / "home"),
        "LANG": "C.UTF-8",
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
    }
    with trio.fail_after(180):
        result = await trio.run_process(
            argv,
            cwd=work,
            env=env,
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 0, result.stdout.decode() + result.stderr.decode()
    assert (work / "calc.py").read_text() == "def add(a, b):\n    return a + b\n"
    assert len(_prompts(upstream)) == 1


async def test_open_webui_task_model_is_in_the_real_catalog(tmp_path: Path) -> None:
    """Title/tag/follow-up calls go to a cheap ``<model>-<effort>`` alias that the real Codex's
    catalog (``codex debug models``, as /v1/models lists it) serves."""
    compose = yaml.safe_load((NODE_CLIENTS.parents[2] / "compose.yaml").read_text())
    task_model = compose["services"]["open-webui"]["environment"]["TASK_MODEL_EXTERNAL"]
    (tmp_path / "home").mkdir()
    catalog = await discover_models(
        require_codex_cli(),
        env={
            "PATH": os.environ["PATH"],
            "HOME": str(tmp_path / "home"),
            "CODEX_HOME": str(tmp_path),
        },
        codex_home=tmp_path,
    )
    entry = catalog.resolve(task_model)
    assert entry.effort in {"none", "minimal", "low"}


async def test_vercel_ai_sdk_runs_its_tool_loop(
    tmp_path: Path, upstream: FakeUpstream, start_server: ServerFactory
) -> None:
    """``tests/clients/node/tools.mjs``: the Vercel AI SDK's own multi-step loop (a tool with
    ``execute``, ``toolChoice: "required"`` on the first step) through ``generateText`` and
    ``streamText``, on its Responses model and its chat model, with the app-server backend: the
    SDK runs the tool and the final text quotes its output."""
    node = shutil.which("node")
    if node is None or not (NODE_CLIENTS / "node_modules" / "ai").is_dir():
        skip_or_fail("the Node clients are not installed: npm ci --prefix tests/clients/node")
    url = (
        await serve_real_codex(tmp_path, upstream.base_url, start_server, backend="app-server")
    ).v1
    with trio.fail_after(180):
        result = await trio.run_process(
            [node, str(NODE_CLIENTS / "tools.mjs"), url],
            capture_stdout=True,
            capture_stderr=True,
            check=False,
            stdin=subprocess.DEVNULL,
        )
    assert result.returncode == 0, result.stderr.decode()
    out = json.loads(result.stdout)
    for name in ("responses", "chat", "responses_stream", "chat_stream"):
        assert out[name]["calls"] == ["get_weather"], (name, out)
        assert out[name]["steps"] == 2, (name, out)
        assert out[name]["text"].startswith("Tool finished. Output: "), (name, out)
        assert "sunny in" in out[name]["text"], (name, out)
    assert out["ran"] == 4
