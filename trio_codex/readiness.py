"""Is this server ready to answer requests? The facts behind ``GET /readyz``.

``/healthz`` says the process serves HTTP; readiness says a request would get a run. It is ready
when all of these hold, and each one that fails is a reason in the answer (503):

* the Codex binary the backend runs is still an executable file (it was at startup);
* the reaper sidecar runs (when the app has one: a server whose reaper is down would leave
  Codex running if it were killed);
* with ``CODEX_LOCAL_ONLY=1``, the Codex configuration is local (else every request is refused);
* the model catalog is not empty (else every request is a 404).

The answer also shows the warm spares of the app-server backend (wanted, ready now, adopted
and failed since start): a spare that keeps failing is a warning in the log, not a reason, since
requests still run without one.

The Codex version comes from ``codex --version``, asked once at startup; a Codex that does not
answer it is reported (``version: null`` and a warning) but not refused. The checks are cheap
(a ``stat``, a cached verdict), so a probe every second costs nothing.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from .codex.probe import is_executable
from .codex.reaper import Reaper
from .codex.warm import SpareStats
from .run.runner import CodexRunner
from .service import Service


@dataclasses.dataclass(frozen=True)
class ReadyReport:
    """One readiness answer: ``ready`` and the reasons it is not; ``body`` is the JSON."""

    ready: bool
    reasons: tuple[str, ...]
    body: dict[str, Any]


@dataclasses.dataclass
class Readiness:
    """What readiness is judged on. ``binary`` and ``version`` are None for a backend that runs
    no binary of ours (tests); ``started`` is set once the server's startup is over."""

    service: Service
    runner: CodexRunner
    backend: str
    binary: Path | None = None
    version: str | None = None
    reaper: Reaper | None = None
    started: bool = False

    def report(self) -> ReadyReport:
        """Judge readiness now (see the module docstring)."""
        reasons: list[str] = []
        warnings: list[str] = []
        if not self.started:
            reasons.append("the server is starting")
        if self.binary is not None:
            if not is_executable(self.binary):
                reasons.append(
                    f"the Codex binary {self.binary} is gone or not executable "
                    "(it was at startup); reinstall it or fix CODEX_PATH"
                )
            if self.started and self.version is None:
                warnings.append(f"`{self.binary} --version` printed no version at startup")
        reaper: dict[str, Any] | None = None
        if self.reaper is not None:
            reaper = {
                "running": self.reaper.alive,
                "pid": self.reaper.pid,
                "process_groups": len(self.reaper.live),
            }
            if self.started and not self.reaper.alive:
                reasons.append(
                    "the reaper sidecar is not running: Codex processes would outlive a "
                    "killed server (see the log for why it stopped)"
                )
        local_only: dict[str, Any] | None = None
        if self.service.local_only is not None:
            verdict = self.service.local_only.verdict()
            local_only = {
                "local": verdict.local,
                "provider": verdict.provider,
                "base_url": verdict.base_url,
                "reason": verdict.reason or None,
            }
            if not verdict.local:
                reasons.append(
                    f"CODEX_LOCAL_ONLY=1 refuses the Codex configuration: {verdict.reason}"
                )
        catalog = self.service.catalog
        models = len({entry.slug for entry in catalog.listed()})
        if self.started and len(catalog) == 0:
            reasons.append(
                "no model was discovered (codex debug models failed, no model in config.toml)"
            )
        limiter = self.runner.limiter
        body: dict[str, Any] = {
            "status": "ready" if not reasons else "not_ready",
            "reasons": reasons,
            "warnings": warnings,
            "codex": {
                "path": None if self.binary is None else str(self.binary),
                "version": self.version,
            },
            "backend": self.backend,
            "models": models,
            "model_ids": len(catalog),
            "local_only": local_only,
            "reaper": reaper,
            "slots": {
                "total": limiter.total_tokens,
                "running": self.runner.running.value,
                "queued": self.runner.queued.value,
            },
            "warm_spares": spare_report(self.runner.backend),
        }
        return ReadyReport(not reasons, tuple(reasons), body)


def spare_stats(backend: object) -> SpareStats | None:
    """The warm pool of a backend that keeps one (app-server), else None."""
    spares = getattr(backend, "spares", None)
    stats = spares() if callable(spares) else None
    return stats if isinstance(stats, SpareStats) else None


def spare_report(backend: object) -> dict[str, int] | None:
    """``spare_stats`` as JSON (``/readyz``, ``/status``): None for a backend without spares."""
    stats = spare_stats(backend)
    return None if stats is None else dataclasses.asdict(stats)


def backend_name(backend: object) -> str:
    """The name of a backend handed to the app (tests, embedders): its ``name`` attribute, else
    its class name. A backend the app makes is named by ``CODEX_BACKEND``."""
    name = getattr(backend, "name", None)
    return name if isinstance(name, str) and name else type(backend).__name__
