"""Deterministic fault injection for the kill tests; inert unless BULKGEN_KILL_AT is set.

`BULKGEN_KILL_AT=point:n` makes the process SIGKILL itself the n-th time it passes `point`
(a name the processing loop passes, such as `written` after a conversation file is stored and
before its item is completed). A real kill, so nothing gets to clean up: the next run must.
"""

from __future__ import annotations

import os
import signal
import threading
from collections import Counter

_passed: Counter[str] = Counter()
_lock = threading.Lock()


def fault_point(point: str) -> None:
    """SIGKILL this process if BULKGEN_KILL_AT names `point` and this is its n-th pass."""
    target = os.environ.get("BULKGEN_KILL_AT")
    if not target or target.partition(":")[0] != point:
        return
    with _lock:
        _passed[point] += 1
        if _passed[point] == int(target.partition(":")[2] or 1):
            os.kill(os.getpid(), signal.SIGKILL)
