"""The answer's text as it arrives, for the text-shaped APIs (chat and legacy completions). Pure.

``AnswerText`` turns a run's events into the pieces of text a client should get, in order:
token deltas as they come, a whole agent message when it was not streamed, a blank line between
two agent messages, nothing until the end for structured output (the answer is the last message
only), and every piece cut at the first stop sequence (``StopCutter``).
"""

from __future__ import annotations

from ..run.events import CodexEvent, MessageCompleted, TextDelta, Transcript
from .stops import StopCutter


class AnswerText:
    """Pieces of the answer to send, and the whole answer at the end."""

    def __init__(self, *, final_only: bool = False, stop: tuple[str, ...] = ()) -> None:
        self.final_only = final_only
        self.text = ""
        self._cutter = StopCutter(stop)
        self._sent_any = False
        self._streamed: set[str] = set()

    @property
    def stopped(self) -> bool:
        """A stop sequence ended the answer."""
        return self._cutter.stopped

    def feed(self, event: CodexEvent) -> str:
        """The text ``event`` adds to the answer (may be empty)."""
        if self.final_only:
            return ""
        if isinstance(event, TextDelta) and event.delta:
            prefix = "\n\n" if self._sent_any and event.item_id not in self._streamed else ""
            self._streamed.add(event.item_id)
            self._sent_any = True
            return self._cutter.feed(prefix + event.delta)
        if isinstance(event, MessageCompleted) and event.item_id not in self._streamed:
            if not event.text:
                return ""
            prefix = "\n\n" if self._sent_any else ""
            self._sent_any = True
            return self._cutter.feed(prefix + event.text)
        return ""

    def finish(self, transcript: Transcript) -> str:
        """The rest to send at the end; sets ``text`` to the whole answer."""
        whole = transcript.final_text if self.final_only else transcript.text
        self.text = StopCutter(self._cutter.stops).cut(whole)
        if self.final_only:
            return self._cutter.feed(whole) + self._cutter.flush()
        return self._cutter.flush()
