"""``NaN``, ``Infinity`` and ``-Infinity`` are not JSON (RFC 8259): a body holding them is a 400
``invalid_json``, not accepted and later echoed back as invalid JSON."""

from __future__ import annotations

import sys
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from quart_trio import QuartTrio

from trio_codex import create_app
from trio_codex.codex.models import ModelCatalog
from trio_codex.run.runner import Emit, ExitInfo, RunSpec
from trio_codex.settings import Settings


class NoRun:
    """A backend that must never be called."""

    async def run(self, spec: RunSpec, emit: Emit) -> ExitInfo:
        raise AssertionError(f"a run started for {spec.prompt!r}")


@pytest.fixture
async def app(tmp_path: Path) -> AsyncIterator[QuartTrio]:
    settings = Settings(workdir=tmp_path, codex_home=tmp_path, codex_path=Path(sys.executable))
    catalog = ModelCatalog.from_slugs({"gpt-test": ("low",)}, created=1_700_000_000)
    app = create_app(settings, backend=NoRun(), catalog=catalog)
    async with app.test_app():
        yield app


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/v1/responses", '{"model": "gpt-test", "input": "hi", "temperature": %s}'),
        (
            "/v1/responses",
            '{"model": "gpt-test", "input": "hi", "metadata": {"a": "b"}, "x": [%s]}',
        ),
        (
            "/v1/chat/completions",
            '{"model": "gpt-test", "messages": [{"role": "user", "content": "hi"}], "top_p": %s}',
        ),
    ],
)
async def test_non_json_constants_are_invalid_json(
    app: QuartTrio, path: str, body: str, constant: str
) -> None:
    response = await app.test_client().post(
        path, data=body % constant, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 400
    error = (await response.get_json())["error"]
    assert error["code"] == "invalid_json"
    assert constant.lstrip("-") in error["message"]
