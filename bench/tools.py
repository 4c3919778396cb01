"""What the waiting path saves over the replay path, for a Responses two-step tool loop.

Same lab as ``bench.bench`` (the real Codex CLI against the fake upstream on 127.0.0.1, the
server as ``python -m trio_codex`` with ``CODEX_BACKEND=app-server``). Each run makes a first
request whose fake model calls two tools, then answers both calls with
``function_call_output`` items in a second request, timed alone:

* ``waiting``: the follow-up (``previous_response_id``) resumes the turn still waiting;
* ``replay (thread)``: the waiting turn is gone (``CODEX_TOOL_RESULT_TIMEOUT=0.5``, the script
  waits for the slot to be free), the follow-up with ``previous_response_id`` resumes the
  thread in a new process and sends the outputs as the next input;
* ``replay (history)``: the same, but the client sends the whole history itself
  (function_call + function_call_output items) without ``previous_response_id``: a new thread.

For each: p50 / p90 of the follow-up's latency, and the upstream input of the follow-up's first
upstream request (characters of its JSON ``input``) with how many of them it shares, as a
prefix, with the first request's upstream input (what a provider's prompt cache can reuse).

Usage, from the repository root: ``python -m bench.tools [--runs 10]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

import openai

from bench.bench import Lab, Server, health, lab, pct, server

ASK = "Weather? [[fake:call_tool=get_weather,get_time]]"
TOOLS: list[Any] = [
    {
        "type": "function",
        "name": "get_weather",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
    {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}},
]


def _client(srv: Server) -> openai.OpenAI:
    return openai.OpenAI(
        base_url=f"http://{srv.host}:{srv.port}/v1", api_key="x", max_retries=0, timeout=60
    )


def _outputs(response: Any) -> list[dict[str, Any]]:
    """The results of the response's calls; the last one says how the fake model answers a
    replay (whose prompt also quotes the first request's call_tool directive)."""
    outputs = [
        {"type": "function_call_output", "call_id": i.call_id, "output": f"{i.name} done"}
        for i in response.output
        if i.type == "function_call"
    ]
    outputs[-1]["output"] += " [[fake:reply=All done.]]"
    return outputs


def _wait_idle(srv: Server) -> None:
    deadline = time.monotonic() + 30
    while health(srv).get("running", 0) and time.monotonic() < deadline:
        time.sleep(0.05)


def _shared_prefix(a: str, b: str) -> int:
    n = 0
    for x, y in zip(a, b, strict=False):
        if x != y:
            break
        n += 1
    return n


def measure(
    lab: Lab, srv: Server, path: str, runs: int
) -> tuple[list[float], list[int], list[int]]:
    client = _client(srv)
    latencies: list[float] = []
    sizes: list[int] = []
    shared: list[int] = []
    firsts: list[int] = []
    for _ in range(runs):
        before = len(lab.upstream.responses_requests())
        first = client.responses.create(model="fake-model", input=ASK, tools=TOOLS)
        after_first = len(lab.upstream.responses_requests())
        follow: dict[str, Any]
        if path == "replay (history)":
            _wait_idle(srv)
            history = [{"role": "user", "content": ASK}]
            calls = [i.model_dump(exclude_none=True) for i in first.output]
            follow = {"input": [*history, *calls, *_outputs(first)]}
        else:
            if path == "replay (thread)":
                _wait_idle(srv)
            follow = {"input": _outputs(first), "previous_response_id": first.id}
        start = time.monotonic()
        final = client.responses.create(model="fake-model", tools=TOOLS, **follow)
        latencies.append(time.monotonic() - start)
        if not final.output_text:
            raise SystemExit(f"{path}: the follow-up has no answer text: {final}")
        requests = lab.upstream.responses_requests()
        one = json.dumps(requests[before]["body"]["input"])
        two = json.dumps(requests[after_first]["body"]["input"])
        sizes.append(len(two))
        shared.append(_shared_prefix(one, two))
        firsts.append(len(one))
        _wait_idle(srv)
    print(f"  (first request's upstream input: {int(statistics.median(firsts)):,} characters)")
    return latencies, sizes, shared


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args(argv)
    print(f"{'path':<18} {'p50':>8} {'p90':>8} {'upstream input':>15} {'shared prefix':>14}")
    with lab() as the_lab:
        for path in ("waiting", "replay (thread)", "replay (history)"):
            extra = {"CODEX_BACKEND": "app-server"}
            if path != "waiting":
                extra["CODEX_TOOL_RESULT_TIMEOUT"] = "0.5"
            with server(the_lab, parallel=2, extra=extra) as srv:
                lat, sizes, shared = measure(the_lab, srv, path, args.runs)
            fmt: Callable[[float], str] = lambda s: f"{s * 1000:.0f} ms"  # noqa: E731
            print(
                f"{path:<18} {fmt(statistics.median(lat)):>8} {fmt(pct(lat, 90)):>8} "
                f"{int(statistics.median(sizes)):>15,} {int(statistics.median(shared)):>14,}"
            )
    return 0


if __name__ == "__main__":
    os.environ.setdefault("OPENAI_AGENTS_DISABLE_TRACING", "1")
    raise SystemExit(main())
