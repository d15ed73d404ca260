"""Interrupts taken at a safe point of generation, whichever way they come.

Ctrl-C, SIGTERM and a terminate from the UI all reach the process running the step as SIGINT or
SIGTERM in its main thread (Dagster maps SIGTERM to SIGINT, and its run worker interrupts a
terminated step with SIGINT). Raised where it lands, the interrupt would cut a database statement
in half; taken here it only sets a flag, which the processing loop reads between steps: it starts
no item, records what finished and leaves the job for the next run to resume. Then the interrupt
goes on as the handler it replaced would have sent it (Dagster's own interrupted error in a run,
KeyboardInterrupt elsewhere). A second signal goes on at once: someone who presses Ctrl-C twice
means it.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)


class DeferredInterrupts:
    """While entered (in the main thread; elsewhere signals cannot be caught), SIGINT and SIGTERM set
    `signum` and call `on_interrupt` instead of raising."""

    def __init__(self, on_interrupt: Callable[[], None] = lambda: None):
        self.on_interrupt = on_interrupt
        self.signum: int | None = None
        self._previous: dict[int, object] = {}

    def __enter__(self) -> DeferredInterrupts:
        if threading.current_thread() is threading.main_thread():
            self._previous = {s: signal.signal(s, self._take) for s in SIGNALS}
        return self

    def __exit__(self, *exc) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)
        self._previous = {}

    @property
    def interrupted(self) -> bool:
        return self.signum is not None

    def deliver(self) -> None:
        """Raise the interrupt taken, as the handler this replaced would have (call it once exited)."""
        if self.signum is not None:
            _raise_as(self._previous.get(self.signum, signal.getsignal(self.signum)), self.signum, None)

    def _take(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is not None:  # the second one: now
            _raise_as(self._previous.get(signum), signum, frame)
        self.signum = signum
        self.on_interrupt()


def _raise_as(handler, signum: int, frame: FrameType | None) -> None:
    """Call `handler` as the signal would have; whatever it does, the caller stops (KeyboardInterrupt)."""
    if callable(handler):
        handler(signum, frame)
    raise KeyboardInterrupt
