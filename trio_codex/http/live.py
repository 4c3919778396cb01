"""What the status page shows: the requests in flight, the last ones finished, and the tokens
each API key used since the server started.

``LiveRequests.opened(record)`` is called when a request arrives (the app's guard) and
``LiveRequests.finished`` is a ``RequestHook``: a request is in flight from its arrival until its
outcome is final (its run over), so a run is always shown with the request it serves. Requests
to the ``quiet`` paths (the operator's endpoints: the page's own polls, scrapes, probes) are not
tracked, so they neither crowd the page nor count as in flight. Memory is
bounded: the requests in flight, ``RECENT`` finished ones, one row per key label. ``snapshot``
is the JSON of ``GET /status.json``; it reads the runner's slots at the moment it is called.

Keys appear as their fingerprints (``Caller.label``), never as keys; requests without a key are
counted under ``-``. Client-chosen text (the model name) is cut to ``TEXT_LIMIT`` characters.
"""

from __future__ import annotations

import collections
import dataclasses
import time
from typing import Any, Final

from trio_util import AsyncValue

from ..readiness import spare_report
from ..run.runner import CodexRunner
from .access import RequestOutcome, RequestRecord

#: Finished requests kept for the page.
RECENT: Final = 20
#: Longest client-chosen text shown.
TEXT_LIMIT: Final = 100


@dataclasses.dataclass
class KeyTotals:
    """What one API key used since the server started."""

    requests: int = 0
    input: int = 0
    cached: int = 0
    output: int = 0
    reasoning: int = 0


def _text(value: str | None) -> str | None:
    return None if value is None else value[:TEXT_LIMIT]


def _seconds(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


class LiveRequests:
    """Requests in flight, recent outcomes and per-key totals (see the module docstring)."""

    def __init__(self, *, quiet: frozenset[str] = frozenset()) -> None:
        self.quiet = quiet
        self.since = time.time()
        self._flying: dict[str, RequestRecord] = {}
        #: Finished requests, newest first, with the wall-clock time they finished.
        self._recent: collections.deque[tuple[RequestOutcome, float]] = collections.deque(
            maxlen=RECENT
        )
        self.keys: dict[str, KeyTotals] = {}
        #: Requests in flight (awaitable: ``count.wait_value(0)``).
        self.count = AsyncValue(0)

    def opened(self, record: RequestRecord) -> None:
        """A request arrived."""
        if record.path in self.quiet:
            return
        self._flying[record.request_id] = record
        self.count.value = len(self._flying)

    def finished(self, outcome: RequestOutcome) -> None:
        """A request's outcome is final (a ``RequestHook``)."""
        if self._flying.pop(outcome.request_id, None) is None:
            return  # a quiet one
        self.count.value = len(self._flying)
        self._recent.appendleft((outcome, time.time()))
        totals = self.keys.setdefault(outcome.key or "-", KeyTotals())
        totals.requests += 1
        if outcome.usage is not None:
            totals.input += outcome.usage.input_tokens
            totals.cached += outcome.usage.cached_input_tokens
            totals.output += outcome.usage.output_tokens
            totals.reasoning += outcome.usage.reasoning_output_tokens

    def snapshot(self, runner: CodexRunner, now: float) -> dict[str, Any]:
        """The status as JSON; ``now`` is ``trio.current_time()`` (the records' clock)."""
        flying = sorted(self._flying.values(), key=lambda r: r.started)
        return {
            "time": time.time(),
            "uptime": round(time.time() - self.since, 3),
            "slots": {
                "total": runner.limiter.total_tokens,
                "running": runner.running.value,
                "queued": runner.queued.value,
                "waiting_for_tools": runner.waiting_for_tools,
            },
            "warm_spares": spare_report(runner.backend),
            "requests": [self._row(record, now) for record in flying],
            "recent": [_finished(o, at) for o, at in self._recent],
            "keys": [
                {"key": key, **dataclasses.asdict(totals)}
                for key, totals in sorted(self.keys.items())
            ],
        }

    @staticmethod
    def _row(record: RequestRecord, now: float) -> dict[str, Any]:
        run = record.run
        if run is None:
            state, run_age = "waiting", None
        elif run.done.is_set():
            state, run_age = "ending", None
        elif not run.started:
            state, run_age = "starting", None
        else:
            state = "finishing" if run.detached else "running"
            run_age = now - run.began
        return {
            "id": record.request_id,
            "method": record.method,
            "route": record.route,
            "model": _text(record.model),
            "key": record.key or "-",
            "stream": record.stream,
            "state": state,
            "age": _seconds(now - record.started),
            "run_age": _seconds(run_age),
        }


def _finished(outcome: RequestOutcome, at: float) -> dict[str, Any]:
    return {
        "id": outcome.request_id,
        "route": outcome.route,
        "model": _text(outcome.model),
        "key": outcome.key or "-",
        "stream": outcome.stream,
        "status": outcome.status,
        "code": outcome.code,
        "duration": _seconds(outcome.duration),
        "tokens": None if outcome.usage is None else outcome.usage.total_tokens,
        "finished": at,
    }
