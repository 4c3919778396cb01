"""The steps every API shares between a validated request and a running Codex.

``Service`` resolves the model and the effective Codex options (sandbox double switch,
local-only), checks the prompt once, writes the request's files (images, output schema) into a
private scratch directory that the run owns (its removal is one of the run's resources, released
in every outcome), and starts the run. The HTTP routes
for each API (chat completions, responses) only translate wire formats around it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import trio

from .codex.command import server_config_overrides
from .codex.localonly import LocalOnlyPolicy
from .codex.models import ModelCatalog, ModelEntry
from .errors import InvalidRequestError, LocalOnlyViolationError, PermissionDeniedError
from .openai.prompt import Prompt, check_encodable, check_length
from .openai.schemas import XCodex
from .run.images import ImagePolicy, check_image_count, check_image_url, materialize_images
from .run.runner import CodexRunner, RunHandle, RunSpec
from .run.tools import ToolSet
from .settings import SandboxMode, Settings

log = logging.getLogger("trio_codex.service")


@dataclasses.dataclass(frozen=True)
class RunOptions:
    """The effective Codex options of one request."""

    model: ModelEntry
    reasoning_effort: str | None
    sandbox: SandboxMode
    network_access: bool


class Service:
    """Shared request-to-run steps; one per app."""

    def __init__(
        self,
        settings: Settings,
        runner: CodexRunner,
        catalog: ModelCatalog,
        *,
        local_only: LocalOnlyPolicy | None = None,
    ) -> None:
        self.settings = settings
        self.runner = runner
        self.catalog = catalog
        # The verdict merges the -c overrides the server itself passes to every run.
        self.local_only = (
            local_only.with_overrides(server_config_overrides(local_only=True))
            if local_only is not None
            else None
        )
        #: Where request scratch directories are made (None: the system temp directory).
        self.scratch_root: Path | None = None
        self.image_policy = ImagePolicy(
            max_bytes=settings.max_image_bytes,
            allow_fetch=settings.allow_image_fetch,
            max_count=settings.max_images,
        )

    def options(
        self,
        model: str,
        x_codex: XCodex | None,
        reasoning_effort: str | None = None,
    ) -> RunOptions:
        """Resolve the model and the effective sandbox; refuse what the server forbids."""
        self.check_local_only()
        entry = self.catalog.resolve(model)
        x = x_codex or XCodex()
        sandbox: SandboxMode = x.sandbox or self.settings.sandbox_mode
        if sandbox == "danger-full-access" and not self.settings.allow_danger_full_access:
            raise PermissionDeniedError(
                "x_codex.sandbox 'danger-full-access' is disabled on this server "
                "(it needs CODEX_ALLOW_DANGER_FULL_ACCESS=1).",
                param="x_codex.sandbox",
                code="sandbox_not_allowed",
            )
        network = bool(x.network_access)
        if network and self.settings.local_only:
            raise InvalidRequestError(
                "x_codex.network_access is refused: the server runs with CODEX_LOCAL_ONLY=1.",
                param="x_codex.network_access",
                code="local_only_violation",
            )
        if network and sandbox == "read-only":
            raise InvalidRequestError(
                "x_codex.network_access needs x_codex.sandbox 'workspace-write' "
                "(the read-only sandbox has no network).",
                param="x_codex.network_access",
                code="invalid_value",
            )
        effort = x.reasoning_effort or reasoning_effort or entry.effort
        effort = effort or self.settings.reasoning_effort
        return RunOptions(entry, effort, sandbox, network)

    def check_local_only(self) -> None:
        if self.local_only is None:
            return
        verdict = self.local_only.verdict()
        if not verdict.local:
            raise LocalOnlyViolationError(
                f"CODEX_LOCAL_ONLY=1 refuses this request: {verdict.reason}", param=None
            )

    def check_images(self, prompt: Prompt) -> None:
        check_image_count(prompt.images, self.image_policy)  # before anything is decoded
        for ref in prompt.images:
            check_image_url(ref, self.image_policy)

    async def prepare(
        self,
        prompt: Prompt,
        options: RunOptions,
        resources: contextlib.AsyncExitStack,
        *,
        param: str | None,
        output_schema: Mapping[str, Any] | None = None,
        resume_thread_id: str | None = None,
        fork_at_turn: str | None = None,
        persist: bool = False,
        tools: ToolSet | None = None,
    ) -> RunSpec:
        """Check the prompt (once, for every API: ``param`` names the field in a refusal),
        write the request's files into a new private scratch directory whose removal is pushed
        onto ``resources``, and return the spec. The caller hands ``resources`` to ``start``."""
        check_length(prompt.text, param=param)
        check_encodable(prompt.text, param=param)
        self.check_images(prompt)
        scratch = Path(tempfile.mkdtemp(prefix="trio-codex-req-", dir=self.scratch_root))
        resources.callback(_remove, scratch)
        images = await materialize_images(prompt.images, scratch, self.image_policy)
        schema_path: Path | None = None
        if output_schema is not None:
            schema_path = scratch / "output-schema.json"
            fd = os.open(schema_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump(output_schema, f)
        return RunSpec(
            prompt=prompt.text,
            model=options.model.slug,
            reasoning_effort=options.reasoning_effort,
            sandbox=options.sandbox,
            network_access=options.network_access,
            images=tuple(images),
            output_schema=schema_path,
            resume_thread_id=resume_thread_id,
            fork_at_turn=fork_at_turn,
            persist=persist,
            tools=tools if tools is not None else ToolSet(),
        )

    async def start(
        self, nursery: trio.Nursery, spec: RunSpec, resources: contextlib.AsyncExitStack
    ) -> RunHandle:
        """Queue for a slot (503 on timeout) and start the run; the run owns ``resources``
        (released when it ends, or at once if it never gets a slot)."""
        return await self.runner.start(nursery, spec, resources=resources.pop_all())


def _remove(scratch: Path) -> None:
    """Remove a scratch directory (a handful of files: the image count is capped)."""
    shutil.rmtree(scratch, ignore_errors=True)
