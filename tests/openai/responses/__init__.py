"""Tests of ``trio_codex.openai.responses``: response ids, the event builder and sequencer, and
the request translation."""
