"""A pool of warm spares: children started ahead of the requests that will adopt them.

``WarmPool.serve`` (run it in a long-lived nursery) keeps ``size`` keepers. Each keeper runs the
factory in a task of its own; the factory starts one spare, gets it ready, ``offer`` s it, and
keeps owning it (its process, its readers) until it is done. The factory calls ``report(True)``
once a request has claimed the spare; the keeper then starts the next spare at once, while the
adopted one lives on in its own task. A spare that dies or fails before anyone claimed it ends
with ``report(False)``; the keeper then waits ``backoff(n)`` after the n-th failure in a row
(doubling from ``backoff_base`` up to ``backoff_max``), so a Codex that cannot start is not
respawned in a tight loop.

Guarantees:

* ``take`` never blocks and never returns a spare that ``claim`` refuses (dead, or taken);
  with no spare ready it returns None, and the caller starts a child of its own;
* a factory's failure is logged and counted, never raised into the pool's nursery;
* cancelling ``serve`` cancels every factory task, idle or adopted (each one tears its own
  child down in its cleanup), and returns only when they are all done.

Knows nothing about Codex: spares are anything with ``claim()``.
"""

from __future__ import annotations

import collections
import dataclasses
import logging
from collections.abc import Awaitable, Callable
from typing import Final, Generic, Protocol, TypeVar

import trio
from trio_util import AsyncValue

log = logging.getLogger("trio_codex.codex.warm")

#: First back-off after a spare failed, in seconds; it doubles per failure in a row.
BACKOFF_BASE: Final = 0.5
#: Longest back-off, in seconds.
BACKOFF_MAX: Final = 30.0


class Spare(Protocol):
    def claim(self) -> bool:
        """Take this spare for a request if it is still usable (at most once)."""
        ...


S = TypeVar("S", bound=Spare)
Report = Callable[[bool], None]


class WarmPool(Generic[S]):
    """See the module docstring."""

    def __init__(
        self,
        size: int,
        factory: Callable[[WarmPool[S], Report], Awaitable[None]],
        *,
        backoff_base: float = BACKOFF_BASE,
        backoff_max: float = BACKOFF_MAX,
    ) -> None:
        self.size = size
        self._factory = factory
        self.backoff_base = backoff_base
        self.backoff_max = backoff_max
        self._ready: collections.deque[S] = collections.deque()
        #: Spares ready to be taken (awaitable: ``ready.wait_value``).
        self.ready = AsyncValue(0)
        #: Spares that failed before a request claimed them, since the pool started.
        self.failures = AsyncValue(0)
        self.adopted = 0

    def stats(self) -> SpareStats:
        """What the pool holds and has done, for ``/readyz``, ``/metrics`` and ``/status``."""
        return SpareStats(self.size, self.ready.value, self.adopted, self.failures.value)

    def backoff(self, failures_in_a_row: int) -> float:
        if failures_in_a_row <= 0:
            return 0.0
        return min(self.backoff_max, self.backoff_base * 2.0 ** (failures_in_a_row - 1))

    def offer(self, spare: S) -> None:
        """A factory's spare is ready."""
        self._ready.append(spare)
        self.ready.value = len(self._ready)

    def withdraw(self, spare: S) -> None:
        """A factory's spare is no longer offered (claimed, dead, or shutting down)."""
        if spare in self._ready:
            self._ready.remove(spare)
        self.ready.value = len(self._ready)

    def take(self) -> S | None:
        """A claimed spare, oldest first; None when none is ready."""
        while self._ready:
            spare = self._ready.popleft()
            self.ready.value = len(self._ready)
            if spare.claim():
                self.adopted += 1
                return spare
        return None

    async def serve(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        """Keep ``size`` spares until cancelled."""
        async with trio.open_nursery() as nursery:
            for _ in range(self.size):
                nursery.start_soon(self._keeper, nursery)
            task_status.started()

    async def _keeper(self, nursery: trio.Nursery) -> None:
        in_a_row = 0
        while True:
            outcome = _Outcome()
            nursery.start_soon(self._run_factory, outcome)
            await outcome.reported.wait()
            if outcome.adopted:
                in_a_row = 0
                continue
            in_a_row += 1
            self.failures.value += 1
            delay = self.backoff(in_a_row)
            log.warning(
                "a warm Codex spare failed before use (%d in a row); next one in %.1f s",
                in_a_row,
                delay,
            )
            await trio.sleep(delay)

    async def _run_factory(self, outcome: _Outcome) -> None:
        try:
            await self._factory(self, outcome)
        except Exception:
            log.exception("starting a warm Codex spare failed")
        finally:
            outcome(False)  # no-op when the factory reported already


@dataclasses.dataclass(frozen=True)
class SpareStats:
    """A warm pool at one moment: spares wanted, ready now, adopted and failed since start."""

    configured: int
    ready: int
    adopted: int
    failed: int


class _Outcome:
    """What a factory reports, once: claimed by a request (True) or failed (False)."""

    def __init__(self) -> None:
        self.reported = trio.Event()
        self.adopted = False

    def __call__(self, adopted: bool) -> None:
        if not self.reported.is_set():
            self.adopted = adopted
            self.reported.set()
