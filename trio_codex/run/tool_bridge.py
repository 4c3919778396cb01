"""The runner's side of a run's client tools: results handed in, awaited by the backend.

``ToolBridge`` implements ``run.tools.ToolResults``. The backend awaits ``get(call_id)`` while
Codex waits on its ``item/tool/call`` request; whoever holds the client's next request hands
the results in with ``put``. Guarantees:

* ``get`` returns the output ``put`` for that call id, whether it was put before or after the
  wait began, and each output is handed out once;
* ``get`` raises ``TimeoutError`` once ``timeout`` seconds pass without the result (the run
  must not wait for ever: app-server itself never gives up);
* ``waiting`` tells which call the backend waits for now (None when it waits for none).
"""

from __future__ import annotations

import math

import trio

from .tools import ToolOutput


class ToolBridge:
    """Results of client tool calls for one run (see module doc)."""

    def __init__(self, timeout: float = math.inf) -> None:
        self.timeout = timeout
        self.waiting: str | None = None
        #: ``get`` gave up on a call (the client's results never came within ``timeout``).
        self.timed_out = False
        self._outputs: dict[str, ToolOutput] = {}
        self._changed = trio.Event()

    def put(self, output: ToolOutput) -> None:
        """Hand in the client's result of ``output.call_id`` (never blocks)."""
        self._outputs[output.call_id] = output
        self._changed.set()
        self._changed = trio.Event()

    async def get(self, call_id: str) -> ToolOutput:
        """The result of ``call_id``, once it is there; ``TimeoutError`` after ``timeout``."""
        self.waiting = call_id
        try:
            with trio.fail_after(self.timeout):
                while call_id not in self._outputs:
                    await self._changed.wait()
        except trio.TooSlowError:
            self.timed_out = True
            raise TimeoutError(
                f"no result for tool call {call_id} within {self.timeout:g} s"
            ) from None
        finally:
            self.waiting = None
        return self._outputs.pop(call_id)
