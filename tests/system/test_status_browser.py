"""The status page in a real headless browser (Debian's ``chromium``) against a real Hypercorn on
127.0.0.1 with a scripted backend: it renders, shows a request while it runs, and updates by
itself when the request ends. A screenshot is kept in the test's tmp dir (``status.png``).

The browser runs on virtual time (``--virtual-time-budget``): its timers jump ahead while it waits
for nothing, and it waits for pending requests. A gate in front of the app holds the page's later
polls until the test has ended the request, so "updates" is a fact, not a race.
"""

from __future__ import annotations

import html.parser
import shutil
from pathlib import Path
from typing import Any

import httpx
import pytest
import trio
from quart_trio import QuartTrio

from tests.support.fakes import TEST_CATALOG, ScriptedBackend, make_settings
from tests.support.servers import ServerFactory, skip_or_fail
from trio_codex import create_app
from trio_codex.api import components
from trio_codex.http.guards import key_fingerprint

pytestmark = pytest.mark.slow


@pytest.fixture
def chromium() -> str:
    """Debian's chromium (skipped without it, failed in CI)."""
    found = shutil.which("chromium")
    if found is None:
        skip_or_fail("chromium not installed: apt-get update && apt-get install -y chromium")
    return found


async def browse(chromium: str, profile: Path, url: str, *args: str) -> str:
    """Run headless Chromium on ``url`` with ``args``; return what it printed on stdout."""
    argv = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        "--no-default-browser-check",
        f"--user-data-dir={profile}",
        *args,
        url,
    ]
    with trio.fail_after(90):
        result = await trio.run_process(argv, capture_stdout=True, capture_stderr=True, check=False)
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode == 0, stderr
    return result.stdout.decode()


class Page(html.parser.HTMLParser):
    """The cells of every table row of a dumped DOM, by table id, and ``data-polls``."""

    def __init__(self, dom: str) -> None:
        super().__init__()
        self.tables: dict[str, list[list[str]]] = {}
        self.polls = 0
        self.ready = ""
        self._table: str | None = None
        self._row: list[str] | None = None
        self._cell: list[str] | None = None
        self._in_ready = False
        self.feed(dom)

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attr = dict(attrs)
        if tag == "body":
            self.polls = int(attr.get("data-polls") or 0)
        elif tag == "table":
            self._table = attr.get("id") or ""
            self.tables[self._table] = []
        elif tag == "tr" and self._table is not None:
            self._row = []
        elif tag == "td" and self._row is not None:
            self._cell = []
        elif tag == "span" and attr.get("id") == "ready":
            self._in_ready = True

    def handle_endtag(self, tag: str) -> None:
        if tag == "td" and self._row is not None and self._cell is not None:
            self._row.append("".join(self._cell).strip())
            self._cell = None
        elif tag == "tr" and self._table is not None and self._row is not None:
            if self._row:
                self.tables[self._table].append(self._row)
            self._row = None
        elif tag == "table":
            self._table = None
        elif tag == "span":
            self._in_ready = False

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if self._in_ready:
            self.ready += data

    def row(self, table: str, first_cell: str) -> list[str] | None:
        return next((r for r in self.tables[table] if r[0] == first_cell), None)


class PollGate:
    """ASGI middleware: once armed, the first ``/status.json`` passes, the later ones wait for
    ``release``."""

    def __init__(self, app: QuartTrio) -> None:
        self.app = app
        self.armed = False
        self.polls = 0
        self.first_answered = trio.Event()
        self.release = trio.Event()

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self.armed and scope["type"] == "http" and scope["path"] == "/status.json":
            self.polls += 1
            number = self.polls
            if number > 1:
                await self.release.wait()
            await self.app(scope, receive, send)
            if number == 1:
                self.first_answered.set()
            return
        await self.app(scope, receive, send)


async def test_status_page_renders_shows_a_running_request_and_updates(
    tmp_path: Path, backend: ScriptedBackend, start_server: ServerFactory, chromium: str
) -> None:
    app = create_app(
        make_settings(tmp_path, api_keys=("sk-a",), max_parallel_requests=3),
        backend=backend,
        catalog=TEST_CATALOG,
    )
    gate = PollGate(app)
    base = await start_server(gate)
    page_url = base + "/status"
    live = components(app).live
    key = key_fingerprint("sk-a")
    auth = {"Authorization": "Bearer sk-a"}
    async with httpx.AsyncClient(base_url=base, headers=auth, timeout=30) as client:
        warm = await client.post(
            "/v1/chat/completions",
            json={"model": "gpt-test", "messages": [{"role": "user", "content": "[[run:x=1]]"}]},
        )
        assert warm.status_code == 200

        async def long_stream(
            *, task_status: trio.TaskStatus[tuple[trio.CancelScope, str]]
        ) -> None:
            body = {
                "model": "org/gpt-test-2",
                "stream": True,
                "messages": [{"role": "user", "content": "[[run:sleep=300]]"}],
            }
            with trio.CancelScope() as scope:
                async with client.stream("POST", "/v1/chat/completions", json=body) as response:
                    task_status.started((scope, response.headers["x-request-id"]))
                    async for _ in response.aiter_bytes():
                        pass

        async with trio.open_nursery() as nursery:
            scope, request_id = await nursery.start(long_stream)

            # 1. It renders, and shows the running request.
            page = Page(
                await browse(
                    chromium, tmp_path / "p1", page_url, "--virtual-time-budget=2500", "--dump-dom"
                )
            )
            assert page.polls >= 1
            assert page.ready == "ready"
            row = page.row("requests", request_id)
            assert row is not None, page.tables
            assert row[1:6] == ["/v1/chat/completions", "org/gpt-test-2", key, "yes", "running"]
            assert float(row[6]) >= 0
            keys = page.row("keys", key)
            assert keys is not None, page.tables
            assert keys[1:3] == ["1", "10"]  # one finished request, 10 input tokens

            # 2. A screenshot to look at.
            shot = tmp_path / "status.png"
            await browse(
                chromium,
                tmp_path / "p2",
                page_url,
                "--virtual-time-budget=2500",
                "--window-size=1280,900",
                "--hide-scrollbars",
                f"--screenshot={shot}",
            )
            assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
            assert shot.stat().st_size > 10_000

            # 3. It updates by itself: the first poll sees the request running; the test ends
            #    the request; the next polls show it finished.
            gate.armed = True
            dom: list[str] = []

            async def third_visit() -> None:
                dom.append(
                    await browse(
                        chromium,
                        tmp_path / "p3",
                        page_url,
                        "--virtual-time-budget=4000",
                        "--dump-dom",
                    )
                )

            nursery.start_soon(third_visit)
            await gate.first_answered.wait()
            scope.cancel()  # the client leaves: its run is cancelled
            await live.count.wait_value(0)
            gate.release.set()
    page = Page(dom[0])
    assert gate.polls >= 2
    assert page.polls >= 2
    assert page.row("requests", request_id) is None
    assert page.tables["requests"] == [["No request in flight"]]
    finished = page.row("recent", request_id)
    assert finished is not None, page.tables
    assert finished[1:6] == [
        "/v1/chat/completions",
        "org/gpt-test-2",
        key,
        "200",  # the stream's head had been sent
        "client_closed",
    ]
    print(f"\nscreenshot: {shot}")
