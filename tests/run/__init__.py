"""Tests of ``trio_codex.run``, the backend-neutral part: events and transcripts, the runner,
and the images a request brings."""
