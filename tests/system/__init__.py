"""Layers 3 and 4, end to end: real processes and sockets (the fake codex, a real Hypercorn, the
official SDKs; marker ``slow``), and the real Codex CLI against the fake upstream (marker
``realcodex``)."""
