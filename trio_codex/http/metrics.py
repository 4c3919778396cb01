"""The Prometheus metrics of one app, and ``GET /metrics`` in the text exposition format.

Each app has its own ``CollectorRegistry`` (never prometheus-client's global one), so several
apps in one process (tests, embedders) count separately. Two sources feed it:

* ``Metrics.observe`` is a ``RequestHook``: every request's ``RequestOutcome`` counts once, when
  it is final (after its run ended), into the request counter, the latency histograms, the token
  counters and the killed-process-group counter;
* ``Metrics.tool_timeout`` counts a run killed because the client's tool results never came
  (no request outcome exists for it: the request that got the tool calls was answered);
* a collector reads the live values at scrape time (requests in flight, runs holding a slot,
  requests queued for one, runs waiting for tool results, warm spares ready (and adopted and
  failed since start), slots, live process groups, readiness, what the server runs), so
  they are never stale.

Label values are bounded whatever clients send: ``route`` is the URL rule that matched
(``unmatched`` otherwise), ``model`` a model id the catalog knows (``other`` otherwise), ``key``
the API key's fingerprint (``Caller.label``, never the key; empty without auth).
"""

from __future__ import annotations

import importlib.metadata
from collections.abc import Callable, Iterable
from typing import Final

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    generate_latest,
)
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    InfoMetricFamily,
    Metric,
)

from ..readiness import Readiness, spare_stats
from .access import RequestOutcome

#: Latency buckets in seconds, from a queue slot handed over at once to CODEX_TIMEOUT's default.
BUCKETS: Final = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600)
#: The ``kind`` label of ``trio_codex_tokens_total``.
TOKEN_KINDS: Final = ("input", "output", "cached", "reasoning")
#: The ``cause`` label of ``trio_codex_process_groups_killed_total`` (``RequestOutcome.killed``).
KILL_CAUSES: Final = (
    "timeout",
    "network_wait",
    "disconnect",
    "stop_sequence",
    "exit_limit",
    "shutdown",
    "tool_result_timeout",
)
#: The exposition's media type.
CONTENT_TYPE: Final = CONTENT_TYPE_LATEST


def _version() -> str:
    try:
        return importlib.metadata.version("trio-codex")
    except importlib.metadata.PackageNotFoundError:  # pragma: no cover - run from a checkout
        return "unknown"


class Metrics:
    """The registry of one app and the hook that feeds it (see the module docstring)."""

    def __init__(self, readiness: Readiness, *, in_flight: Callable[[], int]) -> None:
        self.readiness = readiness
        self.registry = CollectorRegistry(auto_describe=True)
        registry = self.registry
        self.requests = Counter(
            "trio_codex_requests",
            "Requests answered, by route, model, HTTP status (none: the client left) and error code.",
            ["route", "model", "status", "code"],
            registry=registry,
        )
        self.duration = Histogram(
            "trio_codex_request_duration_seconds",
            "From the request's arrival to its end (the run included).",
            ["route"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.queue_wait = Histogram(
            "trio_codex_queue_wait_seconds",
            "How long a request that got a Codex slot waited for it.",
            buckets=BUCKETS,
            registry=registry,
        )
        self.first_byte = Histogram(
            "trio_codex_time_to_first_byte_seconds",
            "From the request's arrival to its response head (a stream's head leaves once it "
            "holds a slot).",
            ["route"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.first_content = Histogram(
            "trio_codex_time_to_first_content_seconds",
            "From the request's arrival to the first answer text Codex produced.",
            ["model"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.run_time = Histogram(
            "trio_codex_run_seconds",
            "How long Codex ran for a request (from the start of its process to its end).",
            ["model"],
            buckets=BUCKETS,
            registry=registry,
        )
        self.tokens = Counter(
            "trio_codex_tokens",
            "Tokens the answers reported, by model, API key fingerprint and kind (input, "
            "output, cached input, reasoning output).",
            ["model", "key", "kind"],
            registry=registry,
        )
        self.killed = Counter(
            "trio_codex_process_groups_killed",
            "Codex process groups the server killed, by cause: timeout, network_wait, "
            "disconnect (the request was cancelled), stop_sequence (the answer ended at a stop "
            "sequence), exit_limit (a complete answer whose Codex did not exit), shutdown, "
            "tool_result_timeout (a turn waited CODEX_TOOL_RESULT_TIMEOUT for the client's "
            "tool results).",
            ["cause"],
            registry=registry,
        )
        for cause in KILL_CAUSES:
            self.killed.labels(cause)
        registry.register(_LiveCollector(readiness, in_flight))
        ProcessCollector(registry=registry)

    def observe(self, outcome: RequestOutcome) -> None:
        """Count one finished request (a ``RequestHook``)."""
        route = outcome.route or "unmatched"
        model = self._model(outcome.model)
        status = "none" if outcome.status is None else str(outcome.status)
        self.requests.labels(route, model, status, outcome.code or "").inc()
        self.duration.labels(route).observe(outcome.duration)
        if outcome.first_byte is not None:
            self.first_byte.labels(route).observe(outcome.first_byte)
        if outcome.queue_wait is not None:
            self.queue_wait.observe(outcome.queue_wait)
        if outcome.first_content is not None:
            self.first_content.labels(model).observe(outcome.first_content)
        if outcome.run_time is not None:
            self.run_time.labels(model).observe(outcome.run_time)
        if outcome.killed is not None:
            self.killed.labels(outcome.killed).inc()
        usage = outcome.usage
        if usage is not None:
            key = outcome.key or ""
            counts = (
                usage.input_tokens,
                usage.output_tokens,
                usage.cached_input_tokens,
                usage.reasoning_output_tokens,
            )
            for kind, count in zip(TOKEN_KINDS, counts, strict=True):
                self.tokens.labels(model, key, kind).inc(count)

    def tool_timeout(self) -> None:
        """Count a run killed because the client's tool results never came (a hook of
        ``CodexRunner.on_tool_timeout``: no request is answered when that happens)."""
        self.killed.labels("tool_result_timeout").inc()

    def _model(self, model: str | None) -> str:
        if model is None:
            return ""
        return model if model in self.readiness.service.catalog else "other"

    def exposition(self) -> bytes:
        """The registry in the Prometheus text format (``CONTENT_TYPE``)."""
        return generate_latest(self.registry)


class _LiveCollector:
    """Values read at scrape time: slots, runs, queue, process groups, what is served."""

    def __init__(self, readiness: Readiness, in_flight: Callable[[], int]) -> None:
        self.readiness = readiness
        self.in_flight = in_flight
        self.version = _version()

    def collect(self) -> Iterable[Metric]:
        ready = self.readiness
        runner = ready.runner
        yield GaugeMetricFamily(
            "trio_codex_slots", "Codex runs allowed at once.", value=runner.limiter.total_tokens
        )
        yield GaugeMetricFamily(
            "trio_codex_runs_running", "Runs holding a Codex slot.", value=runner.running.value
        )
        yield GaugeMetricFamily(
            "trio_codex_requests_in_flight",
            "Requests being served (from arrival until their run is over), the operator's "
            "endpoints aside.",
            value=self.in_flight(),
        )
        yield GaugeMetricFamily(
            "trio_codex_requests_queued",
            "Requests waiting for a Codex slot.",
            value=runner.queued.value,
        )
        yield GaugeMetricFamily(
            "trio_codex_runs_waiting_for_tools",
            "Runs that answered with tool calls and wait, holding their slot, for the client's "
            "results.",
            value=runner.waiting_for_tools,
        )
        spares = spare_stats(runner.backend)
        if spares is not None:
            yield GaugeMetricFamily(
                "trio_codex_warm_spares",
                "Warm app-server children ready for a request now (CODEX_WARM_SPARES wanted).",
                value=spares.ready,
            )
            adopted = CounterMetricFamily(
                "trio_codex_warm_spares_adopted", "Requests that adopted a warm spare."
            )
            adopted.add_metric([], spares.adopted)
            yield adopted
            failed = CounterMetricFamily(
                "trio_codex_warm_spares_failed", "Warm spares that died before a request used them."
            )
            failed.add_metric([], spares.failed)
            yield failed
        if ready.reaper is not None:
            yield GaugeMetricFamily(
                "trio_codex_process_groups",
                "Live Codex process groups known to the reaper.",
                value=len(ready.reaper.live),
            )
        yield GaugeMetricFamily(
            "trio_codex_ready", "1 when GET /readyz answers 200.", value=ready.report().ready
        )
        info = InfoMetricFamily("trio_codex", "What this server runs.")
        info.add_metric(
            [],
            {
                "version": self.version,
                "backend": ready.backend,
                "codex_version": ready.version or "",
            },
        )
        yield info
