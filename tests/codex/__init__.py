"""Tests of ``trio_codex.codex`` that start no process: argv and environment, the JSONL parser,
the model catalog, the local-only verdicts. Real processes are in ``tests/system``."""
