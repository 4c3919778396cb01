"""Layer 1: ``trio_codex.codex.models``: the model catalog from ``codex debug models`` and the
config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from trio_codex import errors
from trio_codex.codex.models import build_catalog, configured_model


def test_catalog_from_debug_models_and_config(tmp_path: Path) -> None:
    """Slugs, effort aliases and the config model are listed; hidden slugs resolve unlisted."""
    debug = json.dumps(
        {
            "models": [
                {
                    "slug": "gpt-5.5",
                    "visibility": "list",
                    "supported_reasoning_levels": [{"effort": "low"}, {"effort": "high"}],
                },
                {"slug": "secret", "visibility": "hide", "supported_reasoning_levels": []},
            ]
        }
    )
    (tmp_path / "config.toml").write_text('model = "fake-model"\nmodel_provider = "fake"\n')
    catalog = build_catalog(debug, configured_model(tmp_path))
    ids = [e.id for e in catalog.listed()]
    assert {"gpt-5.5", "gpt-5.5-low", "gpt-5.5-high", "fake-model", "fake-model-high"} <= set(ids)
    assert "secret" not in ids
    assert "secret" in catalog
    alias = catalog.resolve("gpt-5.5-high")
    assert (alias.slug, alias.effort) == ("gpt-5.5", "high")
    with pytest.raises(errors.NotFoundError) as info:
        catalog.resolve("gpt-4o")
    assert info.value.code == "model_not_found"
    assert build_catalog("garbage", None).listed() == []
