"""Tests of ``trio_codex.openai.responses``: response ids and Codex's rollout record, the event
builder and sequencer, and the request translation."""
