"""``app_protocol.PROTOCOL_PINS``: every app-server method and field the backend uses, checked
against what the installed Codex CLI generates (``codex app-server generate-json-schema``,
with and without ``--experimental``), and against what ``app_protocol`` really sends.

When a Codex release renames, drops or reshapes one of them, or moves one between the stable
and the experimental surface, the realcodex test fails naming each change.
"""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.support.app_schema import AppSchema, shape
from tests.support.servers import require_codex_cli
from trio_codex.codex.app_protocol import (
    EXPERIMENTAL_PINS,
    PROTOCOL_PINS,
    ProtocolPin,
    initialize_params,
    thread_request,
    turn_start_params,
)
from trio_codex.run.runner import RunSpec
from trio_codex.run.tools import ToolSet, ToolSpec

WORKDIR = Path("/work/dir")
PARAMS_OF = {
    "initialize": "InitializeParams",
    "thread/start": "ThreadStartParams",
    "thread/resume": "ThreadResumeParams",
    "thread/fork": "ThreadForkParams",
    "turn/start": "TurnStartParams",
}


def pinned_fields(owner: str) -> set[str]:
    return {pin.name for pin in PROTOCOL_PINS if pin.owner == owner and pin.shape is not None}


def test_every_field_sent_is_pinned() -> None:
    """What initialize, thread/start|resume|fork and turn/start send is in the pins, under the
    definition of the method's params, and the methods themselves are pinned."""
    tools = ToolSet((ToolSpec("f", "d", {"type": "object", "properties": {}}),))

    def spec(**extra: Any) -> RunSpec:
        return RunSpec(
            prompt="p",
            model="m",
            sandbox="workspace-write",
            network_access=True,
            reasoning_effort="low",
            **extra,
        )

    sent = [
        ("initialize", initialize_params("1", experimental=True)),
        thread_request(spec(tools=tools), workdir=WORKDIR),
        thread_request(spec(resume_thread_id="t"), workdir=WORKDIR),
        thread_request(
            spec(resume_thread_id="t", fork_at_turn="u"),
            workdir=WORKDIR,
        ),
        ("turn/start", turn_start_params(spec(), "t", output_schema={})),
    ]
    methods = {pin.name for pin in PROTOCOL_PINS if pin.owner == "ClientRequest"}
    assert {method for method, _ in sent} == set(PARAMS_OF) <= methods
    for method, params in sent:
        unpinned = set(params) - pinned_fields(PARAMS_OF[method])
        assert not unpinned, f"{method} sends fields that are not in PROTOCOL_PINS: {unpinned}"
    capabilities = initialize_params("1")["capabilities"]
    assert set(capabilities) <= pinned_fields("InitializeCapabilities")


def test_the_experimental_surface_used_is_client_tools_only() -> None:
    """Only ``dynamicTools`` needs the experimental API; branching (thread/fork) does not."""
    assert [(p.owner, p.name) for p in EXPERIMENTAL_PINS] == [("ThreadStartParams", "dynamicTools")]
    assert initialize_params("1")["capabilities"]["experimentalApi"] is False


def generate(codex: Path, out: Path, *, experimental: bool) -> AppSchema:
    argv = [str(codex), "app-server", "generate-json-schema", "--out", str(out)]
    if experimental:
        argv.insert(3, "--experimental")
    done = subprocess.run(argv, capture_output=True, timeout=120, check=False)
    assert done.returncode == 0, done.stderr.decode("utf-8", "replace")
    return AppSchema(out)


def problems_of(pin: ProtocolPin, stable: AppSchema, full: AppSchema) -> list[str]:
    """What changed about ``pin`` (empty: nothing)."""
    what = f"{pin.owner}.{pin.name}" if pin.shape is not None else f"method {pin.name!r}"
    if pin.shape is None:
        in_full, in_stable = (
            pin.name in full.methods(pin.owner),
            pin.name in stable.methods(pin.owner),
        )
    else:
        fields, stable_fields = full.fields(pin.owner), stable.fields(pin.owner) or {}
        if fields is None:
            return [f"{what}: the definition {pin.owner} is gone"]
        in_full, in_stable = pin.name in fields, pin.name in stable_fields
        if in_full and shape(fields[pin.name]) != pin.shape:
            return [f"{what}: shape is now {shape(fields[pin.name])}, was {pin.shape}"]
    if not in_full:
        return [f"{what}: gone (not even in the experimental schema)"]
    if pin.experimental and in_stable:
        return [f"{what}: now stable (drop experimental=True from its pin)"]
    if not pin.experimental and not in_stable:
        return [f"{what}: now experimental only (it needs experimentalApi: true)"]
    return []


@pytest.mark.slow
@pytest.mark.realcodex
def test_pinned_protocol_matches_the_installed_cli(tmp_path: Path) -> None:
    """Every pin exists in the installed CLI's schema with its shape and its stability."""
    codex = require_codex_cli()
    stable = generate(codex, tmp_path / "stable", experimental=False)
    full = generate(codex, tmp_path / "experimental", experimental=True)
    problems = [problem for pin in PROTOCOL_PINS for problem in problems_of(pin, stable, full)]
    assert not problems, "the app-server protocol changed:\n" + "\n".join(problems)


def test_the_checker_names_each_kind_of_change(tmp_path: Path) -> None:
    """A pin that is gone, reshaped, or moved between the surfaces is reported as such."""

    def schema(name: str, fields: dict[str, object], methods: list[str]) -> AppSchema:
        directory = tmp_path / name
        directory.mkdir()
        bundle = {
            "definitions": {
                "ClientRequest": {
                    "oneOf": [{"properties": {"method": {"enum": [m]}}} for m in methods]
                },
                "v2": {"ThreadForkParams": {"properties": fields}},
            }
        }
        (directory / "codex_app_server_protocol.schemas.json").write_text(json.dumps(bundle))
        return AppSchema(directory)

    stable = schema("s", {"lastTurnId": {"type": ["string", "null"]}}, ["thread/fork"])
    full = schema(
        "f",
        {"lastTurnId": {"type": ["string", "null"]}, "excludeTurns": {"type": "integer"}},
        ["thread/fork", "thread/x"],
    )
    ok = ProtocolPin("ThreadForkParams", "lastTurnId", "string")
    assert problems_of(ok, stable, full) == []
    assert problems_of(ProtocolPin("ClientRequest", "thread/fork"), stable, full) == []
    assert (
        "shape is now integer"
        in problems_of(ProtocolPin("ThreadForkParams", "excludeTurns", "boolean"), stable, full)[0]
    )
    assert "gone" in problems_of(ProtocolPin("ThreadForkParams", "nope", "string"), stable, full)[0]
    assert (
        "now stable"
        in problems_of(
            ProtocolPin("ThreadForkParams", "lastTurnId", "string", experimental=True), stable, full
        )[0]
    )
    assert (
        "now experimental" in problems_of(ProtocolPin("ClientRequest", "thread/x"), stable, full)[0]
    )
    assert "definition" in problems_of(ProtocolPin("Nope", "x", "string"), stable, full)[0]
