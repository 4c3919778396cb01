"""The number of images in one request is capped (``CODEX_MAX_IMAGES``, default 16).

~40,000 tiny data-URL images used to pass every check, be written to 40,000 files before any
slot was taken, and end in a 500 when Codex's argv passed the kernel's limit. Now the first
part over the cap is a 400 ``too_many_images`` naming it, before anything is decoded or
written.
"""

from __future__ import annotations

import base64
import sys
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from quart_trio import QuartTrio

from trio_codex import create_app
from trio_codex.api import components
from trio_codex.codex.models import ModelCatalog
from trio_codex.errors import InvalidRequestError
from trio_codex.openai.prompt import ImagePart
from trio_codex.run.events import MessageCompleted, TurnCompleted, Usage
from trio_codex.run.images import ImagePolicy, check_image_count
from trio_codex.run.runner import Emit, ExitInfo, RunSpec
from trio_codex.settings import Settings, SettingsError

PNG = "data:image/png;base64," + base64.b64encode(b"\x89PNG\r\n\x1a\n" + b"\0" * 16).decode()


class Recorder:
    """A backend that answers at once and records what it was asked."""

    def __init__(self) -> None:
        self.specs: list[RunSpec] = []

    async def run(self, spec: RunSpec, emit: Emit) -> ExitInfo:
        self.specs.append(spec)
        await emit(MessageCompleted("m", "ok"))
        await emit(TurnCompleted(Usage()))
        return ExitInfo(0, "")


def refs(n: int) -> list[ImagePart]:
    return [ImagePart(PNG, f"messages[0].content[{i}].image_url") for i in range(n)]


def test_default_cap_is_16() -> None:
    assert ImagePolicy().max_count == 16


def test_count_at_the_cap_passes() -> None:
    check_image_count(refs(4), ImagePolicy(max_count=4))


def test_first_part_over_the_cap_is_named() -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_image_count(refs(40_000), ImagePolicy(max_count=4))
    assert (info.value.status_code, info.value.code, info.value.param) == (
        400,
        "too_many_images",
        "messages[0].content[4].image_url",
    )
    assert "4" in info.value.message


def test_setting(tmp_path: Path) -> None:
    base = {"CODEX_PATH": "/bin/sh", "CODEX_HOME": str(tmp_path), "CODEX_WORKDIR": str(tmp_path)}
    assert Settings.from_env(base).max_images == 16
    assert Settings.from_env({**base, "CODEX_MAX_IMAGES": "3"}).max_images == 3
    assert Settings.from_env({**base, "CODEX_MAX_IMAGES": "0"}).max_images == 0
    with pytest.raises(SettingsError, match="CODEX_MAX_IMAGES"):
        Settings.from_env({**base, "CODEX_MAX_IMAGES": "-1"})


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[tuple[QuartTrio, Recorder, Path]]:
    settings = Settings(
        workdir=tmp_path, codex_home=tmp_path, codex_path=Path(sys.executable), max_images=3
    )
    backend = Recorder()
    catalog = ModelCatalog.from_slugs({"gpt-test": ("low",)}, created=1_700_000_000)
    app = create_app(settings, backend=backend, catalog=catalog)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    components(app).service.scratch_root = scratch
    async with app.test_app():
        yield app, backend, scratch


def chat_parts(n: int) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "text", "text": "look"}]
    parts += [{"type": "image_url", "image_url": {"url": PNG}}] * n
    return {"model": "gpt-test", "messages": [{"role": "user", "content": parts}]}


def responses_parts(n: int) -> dict[str, Any]:
    parts: list[dict[str, Any]] = [{"type": "input_text", "text": "look"}]
    parts += [{"type": "input_image", "image_url": PNG}] * n
    return {"model": "gpt-test", "input": [{"role": "user", "content": parts}]}


async def test_chat_over_the_cap_is_refused_before_any_file(
    app: tuple[QuartTrio, Recorder, Path],
) -> None:
    quart, backend, scratch = app
    response = await quart.test_client().post("/v1/chat/completions", json=chat_parts(2000))
    assert response.status_code == 400
    error = (await response.get_json())["error"]
    assert (error["code"], error["param"]) == (
        "too_many_images",
        "messages[0].content[4].image_url",
    )
    assert backend.specs == []
    assert list(scratch.iterdir()) == []


async def test_responses_over_the_cap_is_refused(app: tuple[QuartTrio, Recorder, Path]) -> None:
    quart, backend, _ = app
    response = await quart.test_client().post("/v1/responses", json=responses_parts(4))
    assert response.status_code == 400
    error = (await response.get_json())["error"]
    assert (error["code"], error["param"]) == ("too_many_images", "input[0].content[4].image_url")
    assert backend.specs == []


async def test_at_the_cap_runs(app: tuple[QuartTrio, Recorder, Path]) -> None:
    quart, backend, _ = app
    response = await quart.test_client().post("/v1/chat/completions", json=chat_parts(3))
    assert response.status_code == 200, await response.get_data()
    assert len(backend.specs[0].images) == 3
