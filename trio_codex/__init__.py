"""trio_codex: an OpenAI-compatible HTTP server that answers with the Codex CLI, with hard limits.

Nothing runs at import: ``create_app(settings)`` builds the app; ``trio_codex.app:app`` is the
deployable instance configured from the environment.
"""

from __future__ import annotations

from .api import create_app
from .settings import Settings, SettingsError

__version__ = "0.1.0"
__all__ = ["Settings", "SettingsError", "__version__", "create_app"]
