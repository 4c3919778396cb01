"""Tests of ``trio_codex.openai``, the wire formats, as plain function calls (layer 1)."""
