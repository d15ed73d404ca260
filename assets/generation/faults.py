"""Deterministic fault injection for the kill tests; inert unless BULKGEN_KILL_AT is set.

`BULKGEN_KILL_AT=point:n` makes the process SIGKILL itself the n-th time it passes `point`
(a name the processing loop passes, such as `written` after a conversation file is stored and
before its item is completed). A real kill, so nothing gets to clean up: the next run must.
`point:n:SIGINT` or `point:n:SIGTERM` sends that signal instead, as Ctrl-C or a terminate would.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

# Read once: points are passed per item, and the tests set the variable for a whole process.
_POINT, _, _REST = os.environ.get("BULKGEN_KILL_AT", "").partition(":")
_PASS, _, _SIGNAL = _REST.partition(":")
_passed: Counter[str] = Counter()
_lock = threading.Lock()


def fault_point(point: str) -> None:
    """SIGKILL (or signal) this process if BULKGEN_KILL_AT names `point` and this is its n-th pass."""
    if point != _POINT:
        return
    with _lock:
        _passed[point] += 1
        if _passed[point] == int(_PASS or 1):
            os.kill(os.getpid(), signal.Signals[_SIGNAL or "SIGKILL"])
