"""Tests of the HTTP edge (``trio_codex.http`` and the routes of ``trio_codex.api``): the guards as
plain calls, and the app in process (Quart's test client) with a scripted backend, on virtual
time (layer 2)."""
