"""Stop sequences: cut an answer at the first occurrence of any of them. Pure.

``StopCutter`` takes the answer's text as it arrives, in pieces, and gives back what may be sent:
everything before the first stop string, holding back just enough of the tail to see a stop
string that spans two pieces. Once a stop string is seen, ``stopped`` is set and nothing more
is given back.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from ..errors import InvalidRequestError

#: OpenAI's limit on the number of stop sequences.
MAX_STOPS: Final = 4


def parse_stop(value: object, *, param: str = "stop") -> tuple[str, ...]:
    """``stop`` as a tuple of non-empty strings (a string, a list of up to 4, or null)."""
    if value is None:
        return ()
    items = [value] if isinstance(value, str) else value
    if not isinstance(items, list) or not all(isinstance(s, str) for s in items):
        raise InvalidRequestError(
            f"{param} must be a string or a list of strings.", param=param, code="invalid_value"
        )
    if len(items) > MAX_STOPS:
        raise InvalidRequestError(
            f"{param} takes at most {MAX_STOPS} sequences; got {len(items)}.",
            param=param,
            code="invalid_value",
        )
    return tuple(s for s in items if s)


class StopCutter:
    """Streams text through, cut at the first stop string (see the module docstring)."""

    def __init__(self, stops: Sequence[str]) -> None:
        self.stops = tuple(stops)
        self.stopped = False
        self._held = ""
        self._keep = max((len(s) for s in self.stops), default=1) - 1

    def feed(self, text: str) -> str:
        """The part of ``text`` (after what is held back) that may be sent now."""
        if self.stopped:
            return ""
        if not self.stops:
            return text
        buffer = self._held + text
        cut = min((i for s in self.stops if (i := buffer.find(s)) >= 0), default=-1)
        if cut >= 0:
            self.stopped = True
            self._held = ""
            return buffer[:cut]
        split = max(0, len(buffer) - self._keep)
        self._held = buffer[split:]
        return buffer[:split]

    def flush(self) -> str:
        """What is still held back, at the end of the answer."""
        held, self._held = self._held, ""
        return "" if self.stopped else held

    def cut(self, text: str) -> str:
        """``text`` whole, cut at the first stop string (sets ``stopped`` when it was)."""
        cut = min((i for s in self.stops if (i := text.find(s)) >= 0), default=-1)
        if cut < 0:
            return text
        self.stopped = True
        return text[:cut]
