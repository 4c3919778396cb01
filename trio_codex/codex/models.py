"""The model catalog: what ``GET /v1/models`` lists and what a request's ``model`` may name.

Discovered once at startup from ``codex debug models`` (offline, ~30 ms) plus the ``model`` of
``$CODEX_HOME/config.toml``. Every model is also listed as ``<slug>-<effort>`` for each reasoning
effort it supports (e.g. ``gpt-5.5-high``); such an alias runs the model with that effort.
A name that is neither is ``NotFoundError`` (404 ``model_not_found``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import subprocess
import time
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, Final

import trio

from ..errors import NotFoundError

log = logging.getLogger("trio_codex.codex.models")

#: Efforts offered for a model Codex has no metadata for (a custom provider's model).
DEFAULT_EFFORTS: Final = ("low", "medium", "high")


@dataclasses.dataclass(frozen=True)
class ModelEntry:
    id: str
    slug: str
    effort: str | None
    owned_by: str
    created: int
    listed: bool = True

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "object": "model",
            "created": self.created,
            "owned_by": self.owned_by,
        }


class ModelCatalog:
    """Model ids and effort aliases; ``resolve`` is a dict lookup."""

    def __init__(self, entries: Iterable[ModelEntry]) -> None:
        self._entries: dict[str, ModelEntry] = {}
        for entry in entries:
            self._entries.setdefault(entry.id, entry)

    @classmethod
    def from_slugs(
        cls,
        models: Mapping[str, Iterable[str]],
        *,
        owned_by: str = "codex",
        created: int | None = None,
        hidden: Iterable[str] = (),
    ) -> ModelCatalog:
        """Build a catalog from ``{slug: efforts}``; bases first, then every alias."""
        stamp = int(time.time()) if created is None else created
        hidden_set = set(hidden)
        bases = [
            ModelEntry(slug, slug, None, owned_by, stamp, slug not in hidden_set) for slug in models
        ]
        aliases = [
            ModelEntry(f"{slug}-{effort}", slug, effort, owned_by, stamp, slug not in hidden_set)
            for slug, efforts in models.items()
            for effort in efforts
        ]
        return cls([*bases, *aliases])

    def resolve(self, model_id: str) -> ModelEntry:
        entry = self._entries.get(model_id)
        if entry is None:
            raise NotFoundError(
                f"The model `{model_id}` does not exist or you do not have access to it. "
                "GET /v1/models lists the available ones.",
                param="model",
                code="model_not_found",
            )
        return entry

    def listed(self) -> list[ModelEntry]:
        return [e for e in self._entries.values() if e.listed]

    def __contains__(self, model_id: object) -> bool:
        return model_id in self._entries

    def __len__(self) -> int:
        return len(self._entries)


def parse_debug_models(text: str) -> tuple[dict[str, tuple[str, ...]], set[str]]:
    """``codex debug models`` JSON to ``({slug: efforts}, hidden slugs)``; tolerant of junk."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}, set()
    models: dict[str, tuple[str, ...]] = {}
    hidden: set[str] = set()
    raw = data.get("models") if isinstance(data, dict) else None
    for item in raw if isinstance(raw, list) else []:
        if not isinstance(item, dict) or not isinstance(item.get("slug"), str):
            continue
        slug = item["slug"]
        levels = item.get("supported_reasoning_levels")
        efforts = tuple(
            lvl["effort"]
            for lvl in (levels if isinstance(levels, list) else [])
            if isinstance(lvl, dict) and isinstance(lvl.get("effort"), str)
        )
        models[slug] = efforts
        if item.get("visibility") == "hide":
            hidden.add(slug)
    return models, hidden


def configured_model(codex_home: Path) -> str | None:
    """The ``model`` of ``$CODEX_HOME/config.toml`` (or of its active profile), if any."""
    try:
        with (codex_home / "config.toml").open("rb") as f:
            config = tomllib.load(f)
    except (OSError, tomllib.TOMLDecodeError):
        return None
    model = config.get("model")
    profile = config.get("profile")
    profiles = config.get("profiles")
    if isinstance(profile, str) and isinstance(profiles, dict):
        selected = profiles.get(profile)
        if isinstance(selected, dict) and isinstance(selected.get("model"), str):
            model = selected["model"]
    return model if isinstance(model, str) and model else None


def build_catalog(debug_models_json: str, config_model: str | None) -> ModelCatalog:
    models, hidden = parse_debug_models(debug_models_json)
    if config_model is not None and config_model not in models:
        models = {config_model: DEFAULT_EFFORTS, **models}
    return ModelCatalog.from_slugs(models, hidden=hidden)


async def discover_models(codex: Path, *, env: Mapping[str, str], codex_home: Path) -> ModelCatalog:
    """Ask Codex for its catalog; on failure log it and serve the configured model alone.
    The caller bounds the time it may take (a cancelled run kills ``codex debug models``)."""
    text = ""
    try:
        result = await trio.run_process(
            [os.fspath(codex), "debug", "models"],
            capture_stdout=True,
            capture_stderr=True,
            stdin=subprocess.DEVNULL,
            env=dict(env),
            check=False,
            start_new_session=True,
        )
        text = result.stdout.decode("utf-8", "replace")
        if result.returncode != 0:
            log.warning(
                "`codex debug models` exited %s: %s",
                result.returncode,
                result.stderr.decode("utf-8", "replace").strip()[:500],
            )
    except OSError as exc:
        log.warning("`codex debug models` failed: %s", exc)
    catalog = build_catalog(text, configured_model(codex_home))
    log.info("model catalog: %d ids", len(catalog))
    return catalog
